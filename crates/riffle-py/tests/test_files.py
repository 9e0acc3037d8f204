"""riffle.connectors.files: the engine's file sources and sinks from Python."""

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.connectors.files import CSVSource, DirSink, DirSource, FileSink, FileSource
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main


def read(source):
    flow = Dataflow("read")
    out = []
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow)
    return out


def test_file_source_reads_lines_without_endings(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("one\ntwo\r\n\nthree")
    assert read(FileSource(path, batch_size=2)) == ["one", "two", "", "three"]


def test_file_source_takes_a_str_path(tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    assert read(FileSource(str(tmp_path / "in.txt"))) == ["x"]


def test_dir_source_reads_a_partition_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("a1\na2\n")
    (tmp_path / "b.txt").write_text("b1\n")
    (tmp_path / "sub").mkdir()  # skipped: not a file
    out = read(DirSource(tmp_path))
    assert sorted(out) == ["a1", "a2", "b1"]
    assert [x for x in out if x.startswith("a")] == ["a1", "a2"]
    flow = Dataflow("steps")
    op.input("inp", flow, DirSource(tmp_path))
    assert [s[0] for s in flow.steps()] == ["inp", "inp.py"]


def test_dir_source_refuses_a_file_and_other_patterns(tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    with pytest.raises(ValueError, match="needs a directory"):
        DirSource(tmp_path / "a.txt")
    with pytest.raises(ValueError, match="glob_pat must be"):
        DirSource(tmp_path, glob_pat="*.csv")
    with pytest.raises(ValueError, match="batch_size"):
        FileSource(tmp_path / "a.txt", batch_size=0)


def test_csv_source_gives_a_dict_per_row_in_column_order(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('name,qty,note\napple,3,"red, round"\npear,5,\n')
    rows = read(CSVSource(path))
    assert rows == [
        {"name": "apple", "qty": "3", "note": "red, round"},
        {"name": "pear", "qty": "5", "note": ""},
    ]
    assert list(rows[0]) == ["name", "qty", "note"]


def test_a_missing_file_stops_the_run_naming_the_step_and_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(RiffleError) as info:
        read(FileSource(missing))
    assert info.value.step_id == "inp"
    assert "nope.txt" in str(info.value)


def test_file_sink_writes_str_and_keyed_str_items_as_lines(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old content\n")  # a run without recovery starts the file anew
    flow = Dataflow("write")
    items = op.input("inp", flow, TestingSource(["a", ("k", "b"), "c"], batch_size=2))
    op.output("out", items, FileSink(out))
    run_main(flow)
    assert out.read_text() == "a\nb\nc\n"


def test_file_sink_refuses_items_that_are_not_text(tmp_path):
    flow = Dataflow("write")
    op.output("out", op.input("inp", flow, TestingSource(["a", 2])), FileSink(tmp_path / "o.txt"))
    with pytest.raises(RiffleError) as info:
        run_main(flow)
    assert info.value.step_id == "out"
    assert isinstance(info.value.__cause__, TypeError)
    assert "2 of type int" in str(info.value.__cause__)


def test_dir_sink_keeps_a_keys_lines_in_one_file_in_order(tmp_path):
    flow = Dataflow("write")
    items = [(k, f"{k}{i}") for i in range(5) for k in ("x", "y", "z")]
    op.output("out", op.input("inp", flow, TestingSource(items, batch_size=4)), DirSink(tmp_path, 2))
    run_main(flow)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["part-00000", "part-00001"]
    lines = {p.name: p.read_text().splitlines() for p in tmp_path.iterdir()}
    for key in ("x", "y", "z"):
        holding = [name for name, ls in lines.items() if any(l.startswith(key) for l in ls)]
        assert len(holding) == 1
        assert [l for l in lines[holding[0]] if l.startswith(key)] == [f"{key}{i}" for i in range(5)]
    with pytest.raises(ValueError, match="file_count"):
        DirSink(tmp_path, 0)


def test_files_round_trip_through_a_flow(tmp_path):
    (tmp_path / "in.txt").write_text("to be or\nnot to be\n")
    flow = Dataflow("wc")
    words = op.flat_map("split", op.input("inp", flow, FileSource(tmp_path / "in.txt")), str.split)
    counts = op.count_final("count", words, lambda w: w)
    op.output("out", op.map("fmt", counts, lambda kv: f"{kv[0]}={kv[1]}"), FileSink(tmp_path / "out.txt"))
    run_main(flow)
    assert sorted((tmp_path / "out.txt").read_text().splitlines()) == ["be=2", "not=1", "or=1", "to=2"]
