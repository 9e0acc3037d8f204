"""Independent readers and writers of the tables connector's files, for its tests.

    tables.py delta URL [OPTIONS_JSON]   -> {"rows": [...], "version": V, "commits": N}
    tables.py parquet DIR                -> {"rows": [...]}  (pyarrow, *.parquet not under _/.)
    tables.py duckdb DIR                 -> {"rows": [...]}  (duckdb read_parquet)
    tables.py write FILE N ROW_GROUP     -> writes rows {"text": "p000000"...} with pyarrow
Rows are the "text" column, sorted.
"""
import glob
import json
import os
import sys


def visible(root):
    out = []
    for path in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True):
        rel = os.path.relpath(path, root)
        if not any(p.startswith(("_", ".")) for p in rel.split(os.sep)):
            out.append(path)
    return sorted(out)


def main():
    what = sys.argv[1]
    if what == "delta":
        from deltalake import DeltaTable

        options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
        table = DeltaTable(sys.argv[2], storage_options=options)
        rows = table.to_pyarrow_table().column("text").to_pylist()
        result = {"rows": sorted(rows), "version": table.version(), "commits": len(table.history())}
    elif what == "parquet":
        import pyarrow.parquet as pq

        rows = []
        for path in visible(sys.argv[2]):
            rows += pq.read_table(path).column("text").to_pylist()
        result = {"rows": sorted(rows)}
    elif what == "duckdb":
        import duckdb

        files = visible(sys.argv[2])
        rows = [r[0] for r in duckdb.sql(f"select text from read_parquet({files!r})").fetchall()]
        result = {"rows": sorted(rows)}
    elif what == "write":
        import pyarrow as pa
        import pyarrow.parquet as pq

        n, group = int(sys.argv[3]), int(sys.argv[4])
        table = pa.table({"text": [f"p{i:06}" for i in range(n)], "n": list(range(n))})
        pq.write_table(table, sys.argv[2], row_group_size=group)
        result = {"written": n}
    else:
        raise SystemExit(f"unknown command {what}")
    print(json.dumps(result), flush=True)
    # The answer is out: leave without the interpreter's teardown, where the readers'
    # native thread pools sometimes abort ("terminate called without an active
    # exception") on a busy machine.
    os._exit(0)


if __name__ == "__main__":
    main()
