"""riffle.pipeline: steps wired by name, run by the pipeline engine, cached by code
and content, retried, timed out, and recorded in the project's metadata store."""

import doctest
import importlib
import importlib.util
import shutil
import sqlite3
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import riffle
import riffle.pipeline
from riffle.pipeline import Pipeline, context, step


@pytest.fixture(autouse=True)
def local_stores(monkeypatch):
    # The stores are the project's own files, whatever the environment says.
    monkeypatch.delenv("RIFFLE_METADATA_URL", raising=False)
    monkeypatch.delenv("RIFFLE_ARTIFACTS_URL", raising=False)


@step(outputs=["numbers"])
def load(count):
    return list(range(1, count + 1))


@step(inputs=["numbers"], outputs=["scaled"])
def scale(numbers, factor=1):
    return [n * factor for n in numbers]


@step(inputs=["numbers"], outputs=["capped"])
def cap(numbers, limit):
    return [min(n, limit) for n in numbers]


@step(inputs=["scaled", "capped"], outputs=["total"])
def total(scaled, capped):
    return sum(scaled) + sum(capped)


def numbers_pipeline(project, **ctx):
    p = Pipeline("numbers", context=context(**ctx), project_dir=project)
    return p.add_step(load).add_step(scale).add_step(cap).add_step(total)


def ran(result):
    return [name for name, s in sorted(result.steps.items()) if not s.cache_hit]


def test_outputs_then_every_step_from_the_cache(tmp_path):
    p = numbers_pipeline(tmp_path, count=4, factor=10, limit=2)
    first = p.run()
    assert first.success and first.status == "succeeded"
    assert first.outputs == {
        "numbers": [1, 2, 3, 4],
        "scaled": [10, 20, 30, 40],
        "capped": [1, 2, 2, 2],
        "total": 107,
    }
    assert first["total"] == 107
    assert ran(first) == ["cap", "load", "scale", "total"]

    second = p.run()
    assert second.outputs == first.outputs
    assert second.cached == ["cap", "load", "scale", "total"]
    assert all(s.status == "cached" and s.attempts == 0 for s in second.steps.values())
    assert second.run_id != first.run_id


def test_a_changed_param_reruns_exactly_the_steps_it_reaches(tmp_path):
    p = numbers_pipeline(tmp_path, count=4, factor=10, limit=2)
    p.run()
    # factor feeds `scale` only; `total` reads what changed.
    assert ran(p.run(factor=3)) == ["scale", "total"]
    # limit 2 -> 3 changes `cap`'s output, so `total` runs too.
    assert ran(p.run(factor=3, limit=3)) == ["cap", "total"]
    # limit 4 -> 5 leaves `cap`'s output as it was: `total` is cached by content.
    p.run(factor=3, limit=4)
    assert ran(p.run(factor=3, limit=5)) == ["cap"]
    with pytest.raises(ValueError, match="no step takes parameter"):
        p.run(factr=3)


MODULE = '''
from riffle.pipeline import step

OFFSET = {offset}


def _normalise(x):
    return {normalise}


def prepare(values):
    return [_normalise(v) for v in values]


@step(outputs=["raw"])
def load():
    return [1, 2, 3]


@step(inputs=["raw"], outputs=["clean"])
def clean(raw):
    return prepare(raw)


@step(inputs=["clean"], outputs=["count"])
def count(clean):
    return len(clean)
'''


def load_module(path, name, **source):
    path.write_text(textwrap.dedent(MODULE.format(**source)))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module_pipeline(project, module):
    p = Pipeline("helpers", project_dir=project)
    return p.add_step(module.load).add_step(module.clean).add_step(module.count)


def test_editing_a_helper_the_step_calls_reruns_that_step(tmp_path):
    project = tmp_path / "project"
    v1 = load_module(tmp_path / "flow_v1.py", "flow_v1", offset=0, normalise="x * 2")
    first = module_pipeline(project, v1).run()
    assert first["clean"] == [2, 4, 6]
    assert ran(first) == ["clean", "count", "load"]

    # The same code in another file: every step is cached.
    same = load_module(tmp_path / "flow_same.py", "flow_same", offset=0, normalise="x * 2")
    assert ran(module_pipeline(project, same).run()) == []

    # `clean` calls `prepare`, which calls `_normalise`: editing it re-runs `clean`,
    # and `count`, which reads what `clean` returned; `load` stays cached.
    edited = load_module(tmp_path / "flow_v2.py", "flow_v2", offset=0, normalise="x * 3")
    result = module_pipeline(project, edited).run()
    assert result["clean"] == [3, 6, 9]
    assert ran(result) == ["clean", "count"]

    # A module-level constant the helper reads counts too.
    constant = load_module(tmp_path / "flow_v3.py", "flow_v3", offset=1, normalise="x * 3 + OFFSET")
    assert ran(module_pipeline(project, constant).run()) == ["clean", "count"]
    moved = load_module(tmp_path / "flow_v4.py", "flow_v4", offset=5, normalise="x * 3 + OFFSET")
    result = module_pipeline(project, moved).run()
    assert result["clean"] == [8, 11, 14]
    assert ran(result) == ["clean", "count"]


def test_redefining_a_helper_in_the_same_process_reruns_the_step(tmp_path, monkeypatch):
    # Code versions are kept per code object between runs; none of these changes
    # may be missed by that.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "flow_live.py"
    project = tmp_path / "project"
    module = load_module(path, "flow_live", offset=0, normalise="x * 2")
    monkeypatch.setitem(sys.modules, "flow_live", module)
    assert ran(module_pipeline(project, module).run()) == ["clean", "count", "load"]
    assert ran(module_pipeline(project, module).run()) == []

    # A helper redefined in the module, as a notebook cell or `exec` does.
    exec(compile("def _normalise(x):\n    return x * 3\n", "<cell 1>", "exec"), module.__dict__)
    result = module_pipeline(project, module).run()
    assert result["clean"] == [3, 6, 9]
    assert ran(result) == ["clean", "count"]
    assert ran(module_pipeline(project, module).run()) == []

    # A function's code swapped in place, as IPython's autoreload does.
    def quadruple(x):
        return x * 4

    module._normalise.__code__ = quadruple.__code__
    result = module_pipeline(project, module).run()
    assert result["clean"] == [4, 8, 12]
    assert ran(result) == ["clean", "count"]

    # A module-level value the helper reads, reassigned.
    exec(compile("def _normalise(x):\n    return x + OFFSET\n", "<cell 2>", "exec"), module.__dict__)
    assert module_pipeline(project, module).run()["clean"] == [1, 2, 3]
    module.OFFSET = 10
    result = module_pipeline(project, module).run()
    assert result["clean"] == [11, 12, 13]
    assert ran(result) == ["clean", "count"]

    # The file edited but not reloaded: the code that runs is the same, and so is
    # its version.
    edited = MODULE.format(offset=0, normalise="x * 200").replace(
        "for v in values]", "for v in reversed(values)]"
    )
    path.write_text(textwrap.dedent(edited))
    result = module_pipeline(project, module).run()
    assert result["clean"] == [11, 12, 13]
    assert ran(result) == []

    # Reloaded: its functions are new objects, read anew.
    module = importlib.reload(module)
    result = module_pipeline(project, module).run()
    assert result["clean"] == [600, 400, 200]
    assert ran(result) == ["clean", "count"]
    assert ran(module_pipeline(project, module).run()) == []


def test_a_function_source_is_read_once_per_code_object(monkeypatch):
    reads = []
    getsource = riffle.pipeline.inspect.getsource

    def counting(obj):
        reads.append(obj)
        return getsource(obj)

    monkeypatch.setattr(riffle.pipeline.inspect, "getsource", counting)

    def user(x):
        return x

    first = riffle.pipeline.code_version(user)
    assert len(reads) == 1
    assert riffle.pipeline.code_version(user) == first
    assert len(reads) == 1  # kept
    user.__code__ = (lambda x: x + 1).__code__
    assert riffle.pipeline.code_version(user) != first
    assert len(reads) == 2


ARRAY = {"data": np.zeros(10_000)}


@step(outputs=["array"], cache=False)
def read_array():
    return ARRAY["data"].copy()


@step(inputs=["array"], outputs=["mean"])
def mean(array):
    return float(array.mean())


def test_one_changed_element_of_a_large_array_misses_the_cache(tmp_path):
    p = Pipeline("arrays", project_dir=tmp_path).add_step(read_array).add_step(mean)
    assert ran(p.run()) == ["mean", "read_array"]
    # read_array runs every time (cache=False); mean reads the same bytes.
    assert ran(p.run()) == ["read_array"]
    ARRAY["data"] = ARRAY["data"].copy()
    ARRAY["data"][5_000] = 1e-9
    result = p.run()
    assert ran(result) == ["mean", "read_array"]
    assert result["mean"] == pytest.approx(1e-13)


FLAKY = {"failures_left": 0, "calls": 0}


@step(outputs=["value"], retry=2)
def flaky():
    FLAKY["calls"] += 1
    if FLAKY["failures_left"] > 0:
        FLAKY["failures_left"] -= 1
        raise ConnectionError("the service is busy")
    return "ok"


def test_retry_reruns_a_failing_step(tmp_path):
    FLAKY.update(failures_left=2, calls=0)
    result = Pipeline("retries", project_dir=tmp_path / "a").add_step(flaky).run()
    assert result["value"] == "ok"
    assert FLAKY["calls"] == 3
    assert result.steps["flaky"].attempts == 3

    FLAKY.update(failures_left=5, calls=0)
    with pytest.raises(riffle.RiffleError, match=r"flaky.*ConnectionError: the service is busy \(after 3 attempts\)") as e:
        Pipeline("retries", project_dir=tmp_path / "b").add_step(flaky).run()
    assert FLAKY["calls"] == 3
    assert isinstance(e.value.__cause__, ConnectionError)


SLOW_DONE = threading.Event()


@step(outputs=["late"], timeout=0.2)
def slow():
    time.sleep(1.0)
    SLOW_DONE.set()
    return 1


def test_a_step_past_its_timeout_fails_naming_it(tmp_path):
    SLOW_DONE.clear()
    started = time.monotonic()
    with pytest.raises(riffle.RiffleError, match=r"step 'slow' .*timed out after 0.200 s") as e:
        Pipeline("timeouts", project_dir=tmp_path).add_step(slow).run()
    assert time.monotonic() - started < 0.9
    assert e.value.step_id == "slow"
    assert isinstance(e.value.__cause__, TimeoutError)
    # The abandoned attempt finishes on its own thread; wait so it does not outlive the test.
    assert SLOW_DONE.wait(5)


@step(outputs=["rows"])
def rows():
    return ["1", "2", "x"]


@step(inputs=["rows"], outputs=["parsed"])
def parse(rows):
    return [int(r) for r in rows]


@step(inputs=["parsed"], outputs=["sum"])
def add_up(parsed):
    return sum(parsed)


def test_a_user_exception_is_the_cause_of_a_riffle_error_naming_the_step(tmp_path):
    p = Pipeline("errors", project_dir=tmp_path).add_step(rows).add_step(parse).add_step(add_up)
    with pytest.raises(riffle.RiffleError, match=r"step 'parse' of pipeline 'errors' failed: ValueError: invalid literal") as e:
        p.run()
    assert e.value.step_id == "parse"
    cause = e.value.__cause__
    assert isinstance(cause, ValueError) and "'x'" in str(cause)
    assert cause.__traceback__ is not None
    db = sqlite3.connect(tmp_path / ".riffle" / "metadata.db")
    statuses = dict(db.execute("SELECT step_id, status FROM step_runs"))
    assert statuses == {"rows": "succeeded", "parse": "failed", "add_up": "skipped"}
    assert db.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def test_runs_steps_artifacts_and_lineage_are_in_the_metadata_store(tmp_path):
    p = numbers_pipeline(tmp_path, count=3, factor=2, limit=1)
    first = p.run()
    second = p.run()
    db = sqlite3.connect(tmp_path / ".riffle" / "metadata.db")
    runs = db.execute("SELECT id, pipeline_id, status FROM runs ORDER BY started_ms").fetchall()
    assert runs == [(first.run_id, "numbers", "succeeded"), (second.run_id, "numbers", "succeeded")]
    steps = db.execute(
        "SELECT step_id, status, cache_hit, output_hash FROM step_runs WHERE run_id = ? ORDER BY step_id",
        (second.run_id,),
    ).fetchall()
    assert [(s, st, hit) for s, st, hit, _ in steps] == [
        ("cap", "cached", 1), ("load", "cached", 1), ("scale", "cached", 1), ("total", "cached", 1)
    ]
    assert {s: h for s, _, _, h in steps} == {n: r.output for n, r in second.steps.items()}
    artifacts = {h for (h,) in db.execute("SELECT hash FROM artifacts")}
    assert {r.output for r in first.steps.values()} <= artifacts
    # `total` read the outputs of `scale` and `cap`.
    inputs = db.execute(
        "SELECT l.name, l.artifact_hash FROM lineage l JOIN step_runs s ON s.id = l.step_run_id "
        "WHERE s.run_id = ? AND s.step_id = 'total' AND l.direction = 'input' ORDER BY l.name",
        (first.run_id,),
    ).fetchall()
    assert inputs == [("cap", first.steps["cap"].output), ("scale", first.steps["scale"].output)]
    params = dict(db.execute(
        "SELECT p.name, p.value FROM params p JOIN step_runs s ON s.id = p.step_run_id "
        "WHERE s.run_id = ? AND s.step_id = 'scale'", (first.run_id,)
    ))
    assert params == {"factor": "2"}


@step(outputs=["low", "high"])
def split(table):
    mask = pc.less(table["x"], 3)
    return {"low": table.filter(mask), "high": table.filter(pc.invert(mask))}


@step(inputs=["high", "low"], outputs=["sizes"])
def sizes(high, low):
    return (low.num_rows, high.num_rows)


def test_several_outputs_and_arrow_tables(tmp_path):
    table = pa.table({"x": [1, 2, 3, 4, 5]})
    p = Pipeline("tables", context=context(table=table), project_dir=tmp_path)
    result = p.add_step(sizes).add_step(split).run()
    assert result["sizes"] == (2, 3)
    assert isinstance(result["high"], pa.Table) and result["high"].column("x").to_pylist() == [3, 4, 5]
    assert ran(p.run(table=pa.table({"x": [1, 2, 3, 4, 5]}))) == []
    assert ran(p.run(table=pa.table({"x": [1, 2, 3, 4, 6]}))) == ["sizes", "split"]


@step
def hello(who="world"):
    return f"hello {who}"


def test_bare_steps_names_and_inputs_by_position(tmp_path):
    assert hello() == "hello world"  # a step is still its function
    produce = step(outputs=["greeting"], name="produce")(hello.func)
    shout = step(inputs=["greeting"], outputs=["loud"], name="shout")(lambda text: text.upper())
    p = Pipeline("bare", context=context(who="riffle"), project_dir=tmp_path)
    result = p.add_step(hello).add_step(produce).add_step(shout).run()
    assert result.outputs == {"greeting": "hello riffle", "loud": "HELLO RIFFLE"}
    assert sorted(result.steps) == ["hello", "produce", "shout"]


def test_wiring_mistakes_are_refused_naming_the_step(tmp_path):
    p = Pipeline("wiring", project_dir=tmp_path).add_step(parse)
    with pytest.raises(ValueError, match="step 'parse' reads 'rows', which no step"):
        p.run()
    with pytest.raises(ValueError, match="already has a step named 'parse'"):
        p.add_step(parse)
    with pytest.raises(TypeError, match="parameter 'count' is neither an input nor a context value"):
        Pipeline("wiring", project_dir=tmp_path).add_step(load).run()


def test_a_changed_signature_is_bound_anew(tmp_path):
    # Signatures are kept between runs while a function's code and defaults stay.
    def measure(numbers, limit):
        return [min(n, limit) for n in numbers]

    capped = step(inputs=["numbers"], outputs=["capped"], name="measure")(measure)
    p = Pipeline("signatures", context=context(count=3), project_dir=tmp_path).add_step(load).add_step(capped)
    with pytest.raises(TypeError, match="parameter 'limit' is neither an input nor a context value"):
        p.run()
    measure.__defaults__ = (2,)
    assert p.run()["capped"] == [1, 2, 2]
    measure.__code__ = (lambda numbers, cap: [min(n, cap) for n in numbers]).__code__
    assert p.run(cap=3)["capped"] == [1, 2, 3]
    with pytest.raises(ValueError, match=r"no step takes parameter\(s\) \['limit'\]"):
        p.run(limit=1)


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = doctest.testmod(riffle.pipeline)
    assert results.attempted > 0 and results.failed == 0


def test_outputs_are_read_from_the_store_only_when_looked_up(tmp_path):
    p = numbers_pipeline(tmp_path, count=4, factor=10, limit=2)
    first = p.run()
    assert list(first.outputs) == ["numbers", "scaled", "capped", "total"]
    assert len(first.outputs) == 4 and "total" in first.outputs and "nothing" not in first.outputs
    second = p.run()
    assert second.cached == ["cap", "load", "scale", "total"]
    assert second["numbers"] == [1, 2, 3, 4]
    assert second["numbers"] is second.outputs["numbers"]  # read once, then kept

    # With the artifacts gone, what was read stays readable; the rest names itself.
    shutil.rmtree(tmp_path / ".riffle" / "artifacts")
    assert second["numbers"] == [1, 2, 3, 4]
    with pytest.raises(riffle.RiffleError, match=r"output 'total' of step 'total': artifact [0-9a-f]{64} is missing") as e:
        second["total"]
    assert e.value.step_id == "total"
    with pytest.raises(KeyError):
        second["nothing"]


FRAME = {}


def stored_blob(project, artifact):
    """The bytes a step returned, from its artifact file in the project's local store
    (the engine writes them as one postcard byte string: a varint length, then them)."""
    (path,) = (project / ".riffle" / "artifacts").rglob(artifact)
    raw = path.read_bytes()
    length = shift = offset = 0
    while True:
        byte = raw[offset]
        offset += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    assert len(raw) == offset + length
    return raw[offset:]


def sales_frame(amount_of_row_500):
    frame = pd.DataFrame(
        {
            "region": ["north", "south", "east", "west"] * 250,
            "amount": np.arange(1_000, dtype="float64"),
            "units": np.arange(1_000, dtype="int64") % 7,
        },
        index=pd.Index([f"order-{i}" for i in range(1_000)], name="order"),
    )
    frame.loc["order-500", "amount"] = amount_of_row_500
    return frame


@step(outputs=["sales"], cache=False)
def read_sales():
    return FRAME["sales"].copy()


@step(inputs=["sales"], outputs=["by_region"])
def by_region(sales):
    return sales.groupby("region").agg(amount=("amount", "sum"), units=("units", "sum"))


def test_a_pandas_dataframe_is_an_arrow_artifact_cached_by_content(tmp_path):
    FRAME["sales"] = sales_frame(500.0)
    p = Pipeline("frames", project_dir=tmp_path).add_step(read_sales).add_step(by_region)
    first = p.run()
    assert ran(first) == ["by_region", "read_sales"]
    pd.testing.assert_frame_equal(first["sales"], FRAME["sales"])
    assert first["sales"].index.name == "order"
    expected = FRAME["sales"].groupby("region").agg(amount=("amount", "sum"), units=("units", "sum"))
    pd.testing.assert_frame_equal(first["by_region"], expected)
    # Stored as Arrow IPC (with pandas' metadata), not pickled.
    ((codec, data),) = riffle.pipeline._unpack(stored_blob(tmp_path, first.steps["read_sales"].output))
    assert codec == "arrow-pandas"
    assert pa.ipc.open_stream(data).read_all().num_rows == 1_000

    # An equal frame built anew gives the same bytes: by_region is a cache hit.
    FRAME["sales"] = sales_frame(500.0)
    second = p.run()
    assert ran(second) == ["read_sales"]
    pd.testing.assert_frame_equal(second["by_region"], expected)

    # One value in the middle changed: by_region runs again.
    FRAME["sales"] = sales_frame(500.5)
    third = p.run()
    assert ran(third) == ["by_region", "read_sales"]
    assert third["by_region"].loc["north", "amount"] == expected.loc["north", "amount"] + 0.5
