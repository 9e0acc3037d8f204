"""TestingSource's EOF and ABORT markers."""

import pytest

import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main


def counting_flow(items, batch_size=1):
    """A flow writing every item to one list and the final count of items per
    key to another."""
    flow = Dataflow("f")
    inp = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    seen, counts = [], []
    op.output("seen", inp, TestingSink(seen))
    op.output("counts", op.count_final("count", inp, lambda x: "all"), TestingSink(counts))
    return flow, seen, counts


@pytest.mark.parametrize("batch_size", [1, 2, 10])
def test_eof_ends_the_stream_there_and_final_steps_emit(batch_size):
    flow, seen, counts = counting_flow([1, 2, 3, TestingSource.EOF(), 4, 5], batch_size)
    run_main(flow)
    assert seen == [1, 2, 3]
    assert counts == [("all", 3)]


def test_eof_first_gives_an_empty_stream():
    flow, seen, counts = counting_flow([TestingSource.EOF(), 1])
    run_main(flow)
    assert seen == []
    assert counts == []


def test_abort_stops_the_run_like_a_crash_once_per_marker():
    abort = TestingSource.ABORT()
    flow, seen, counts = counting_flow([1, 2, abort, 3, 4])
    run_main(flow)  # returns: the abort is what the test asked for
    assert abort._triggered
    # Only items before the marker; what was in flight may be lost; a crashed
    # run emits no final results.
    assert seen == [1, 2][: len(seen)]
    assert counts == []
    # A later run passes over the marker that already fired.
    seen.clear()
    run_main(flow)
    assert seen == [1, 2, 3, 4]
    assert counts == [("all", 4)]


def test_a_user_error_wins_over_an_abort():
    from riffle import RiffleError

    flow = Dataflow("f")
    inp = op.input("inp", flow, TestingSource([0, TestingSource.ABORT()]))
    op.output("out", op.map("inv", inp, lambda x: 1 / x), TestingSink([]))
    with pytest.raises(RiffleError, match='"inv"') as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize("marker", [TestingSource.EOF, TestingSource.ABORT], ids=["EOF", "ABORT"])
def test_a_marker_class_must_be_instantiated(marker):
    flow = Dataflow("f")
    with pytest.raises(ValueError, match=rf'step "inp": `TestingSource.{marker.__name__}` must be instantiated'):
        op.input("inp", flow, TestingSource([1, marker]))
