"""What goes wrong, and how it is told: build errors at once, naming the step;
run errors as a RiffleError naming the step, caused by the user's exception."""

import traceback

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main


class Boom(Exception):
    pass


def test_a_user_exception_is_the_cause_of_a_riffle_error_naming_the_step():
    raised = []

    def explode(x):
        if x == 2:
            error = Boom(f"bad item {x}")
            raised.append(error)
            raise error
        return x

    flow = Dataflow("f")
    out = []
    op.output("out", op.map("explode", op.input("inp", flow, TestingSource([1, 2, 3])), explode), TestingSink(out))
    with pytest.raises(RiffleError) as info:
        run_main(flow)
    error = info.value
    assert error.__cause__ is raised[0]
    assert error.step_id == "explode"
    assert "step \"explode\" failed" in str(error)
    assert "Boom: bad item 2" in str(error)
    # The user's traceback is kept: it points into the user's function.
    frames = traceback.extract_tb(error.__cause__.__traceback__)
    assert frames[-1].name == "explode"
    # What was written before the failure stays written.
    assert out == [1]


@pytest.mark.parametrize(
    "build",
    [
        lambda s: op.filter("step", s, lambda x: 1 / 0),
        lambda s: op.branch("step", s, lambda x: 1 / 0).trues,
        lambda s: op.filter_map("step", s, lambda x: 1 / 0),
        lambda s: op.flat_map("step", s, lambda x: 1 / 0),
        lambda s: op.flat_map_batch("step", s, lambda xs: 1 / 0),
        lambda s: op.inspect("step", s, lambda i, x: 1 / 0),
        lambda s: op.key_on("step", s, lambda x: 1 / 0),
        lambda s: op.map_value("step", op.key_on("k", s, str), lambda x: 1 / 0),
        lambda s: op.stateful_map("step", op.key_on("k", s, str), lambda st, x: 1 / 0),
        lambda s: op.count_final("step", s, lambda x: 1 / 0),
        lambda s: op.reduce_final("step", op.key_on("k", s, lambda x: "same"), lambda a, b: 1 / 0),
        lambda s: op.filter_value("step", op.key_on("k", s, str), lambda v: 1 / 0),
        lambda s: op.flat_map_value("step", op.key_on("k", s, str), lambda v: 1 / 0),
        lambda s: op.max_final("step", op.key_on("k", s, lambda x: "same"), by=lambda v: 1 / 0),
    ],
    ids=["filter", "branch", "filter_map", "flat_map", "flat_map_batch", "inspect", "key_on", "map_value", "stateful_map", "count_final", "reduce_final", "filter_value", "flat_map_value", "max_final"],
)
def test_every_operator_chains_the_users_exception(run, build):
    with pytest.raises(RiffleError) as info:
        run([1, 2], build)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.step_id == "step"
    assert 'step "step" failed' in str(info.value)


def test_an_exception_in_the_sink_names_the_output_step():
    class Refusing(list):
        def extend(self, items):
            raise OSError("disk full")

    flow = Dataflow("f")
    op.output("save", op.input("inp", flow, TestingSource([1])), TestingSink(Refusing()))
    with pytest.raises(RiffleError, match="save") as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, OSError)


def test_a_failed_flow_runs_again_from_the_start():
    attempts = []

    def flaky(x):
        attempts.append(x)
        if len(attempts) == 1:
            raise Boom("first time")
        return x

    flow = Dataflow("f")
    out = []
    op.output("out", op.map("flaky", op.input("inp", flow, TestingSource([1, 2])), flaky), TestingSink(out))
    with pytest.raises(RiffleError):
        run_main(flow)
    run_main(flow)
    assert out == [1, 2]


def test_a_duplicate_step_id_is_refused_when_added():
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1]))
    op.map("double", nums, lambda x: x * 2)
    with pytest.raises(ValueError, match='"double" is used twice in dataflow "f"'):
        op.map("double", nums, lambda x: x * 2)
    with pytest.raises(ValueError, match='"inp" is used twice'):
        op.input("inp", flow, TestingSource([2]))


def test_a_refused_step_leaves_the_flow_as_it_was():
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1, 2]))
    with pytest.raises(TypeError):
        op.map("double", nums, "not callable")
    out = []
    op.output("out", op.map("double", nums, lambda x: x * 2), TestingSink(out))
    run_main(flow)
    assert out == [2, 4]


@pytest.mark.parametrize("step_id", ["", "a.b", "a/b", "a:b", "tab\there", "x" * 181])
def test_invalid_step_ids_are_refused(step_id):
    flow = Dataflow("f")
    with pytest.raises(ValueError, match="step id .* is not valid"):
        op.input(step_id, flow, TestingSource([1]))


def test_invalid_flow_ids_are_refused():
    with pytest.raises(ValueError, match="flow id"):
        Dataflow("a.b")


@pytest.mark.parametrize(
    "add, argument",
    [
        (lambda s: op.map("bad", s, 3), "mapper"),
        (lambda s: op.filter("bad", s, None), "predicate"),
        (lambda s: op.branch("bad", s, None), "predicate"),
        (lambda s: op.filter_map("bad", s, "x"), "mapper"),
        (lambda s: op.flat_map("bad", s, []), "mapper"),
        (lambda s: op.flat_map_batch("bad", s, ()), "mapper"),
        (lambda s: op.inspect("bad", s, 1.5), "inspector"),
        (lambda s: op.key_on("bad", s, {}), "key"),
        (lambda s: op.map_value("bad", s, 0), "mapper"),
        (lambda s: op.stateful_map("bad", s, 0), "mapper"),
        (lambda s: op.count_final("bad", s, 0), "key"),
        (lambda s: op.reduce_final("bad", s, 0), "reducer"),
        (lambda s: op.filter_value("bad", s, 0), "predicate"),
        (lambda s: op.flat_map_value("bad", s, 0), "mapper"),
        (lambda s: op.max_final("bad", s, by=0), "by"),
        (lambda s: op.min_final("bad", s, by=0), "by"),
    ],
)
def test_a_function_that_is_not_callable_is_refused_naming_the_step(add, argument):
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match=f'step "bad": `{argument}` must be callable'):
        add(nums)


def test_unknown_sources_and_sinks_are_refused_naming_the_step():
    flow = Dataflow("f")
    with pytest.raises(TypeError, match='step "src": cannot read a list'):
        op.input("src", flow, [1, 2])
    nums = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match='step "dst": cannot write to a list'):
        op.output("dst", nums, [])


def test_run_main_checks_its_arguments():
    from datetime import timedelta

    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(TypeError, match="timedelta"):
        run_main(flow, epoch_interval=5)
    with pytest.raises(ValueError, match="positive"):
        run_main(flow, epoch_interval=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="recovery_config must be a riffle.recovery.RecoveryConfig"):
        run_main(flow, recovery_config=object())
    run_main(flow, epoch_interval=timedelta(milliseconds=100))


def test_testing_source_and_sink_check_their_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        TestingSource([1], batch_size=0)
    with pytest.raises(TypeError, match="list"):
        TestingSink(())


def test_a_testing_source_reads_its_iterable_when_added():
    flow = Dataflow("f")
    seen = []

    def numbers():
        for n in range(3):
            seen.append(n)
            yield n

    source = TestingSource(numbers())
    stream = op.input("inp", flow, source)
    assert seen == [0, 1, 2]
    out = []
    op.output("out", stream, TestingSink(out))
    run_main(flow)
    run_main(flow)
    assert out == [0, 1, 2, 0, 1, 2]


def test_an_iterable_that_raises_is_refused_when_added_and_the_id_stays_free():
    def broken():
        yield 1
        raise Boom("source broke")

    flow = Dataflow("f")
    with pytest.raises(Boom):
        op.input("inp", flow, TestingSource(broken()))
    op.input("inp", flow, TestingSource([1]))


def test_an_upstream_that_is_not_a_stream_is_refused_naming_the_step():
    flow = Dataflow("f")
    with pytest.raises(TypeError, match='step "m": `up` must be a Stream; got a list'):
        op.map("m", [1, 2], str)
    with pytest.raises(TypeError, match='step "inp": `flow` must be a Dataflow; got a str'):
        op.input("inp", "f", TestingSource([1]))
    with pytest.raises(TypeError, match='step "rm": `up` must be a Stream'):
        op.key_rm("rm", flow)
