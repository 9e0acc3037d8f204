"""The DuckDB peer of `riffle bench connector-duckdb`: the `duckdb` Python package
writing the same rows (id BIGINT, payload VARCHAR of SIZE bytes) into a table of a
fresh database file, and reading them back, each phase one JSON line:

- `executemany`: one transaction of `INSERT ... VALUES (?, ?)` over a list of rows
  (what a Python program appending rows does);
- `insert-select`: `INSERT INTO t SELECT i, repeat('x', SIZE) FROM range(N)`, DuckDB
  making the rows itself (the engine's limit, no client in the way);
- `out`: `SELECT * FROM t` fetched to the client (`fetchall`).

    python bench/duckdb_peer.py ITEMS SIZE [MANY]

MANY (default ITEMS) is the row count of the `executemany` phase, which is slow.
"""

import json
import os
import sys
import tempfile
import time

import duckdb


def line(phase, items, seconds):
    print(
        json.dumps(
            {
                "workload": "duckdb-python",
                "phase": phase,
                "workers": 1,
                "items": items,
                "seconds": round(seconds, 3),
                "items_per_s": round(items / seconds) if seconds > 0 else 0,
                "duckdb": duckdb.__version__,
            }
        ),
        flush=True,
    )


def main():
    items = int(sys.argv[1])
    size = int(sys.argv[2])
    many = int(sys.argv[3]) if len(sys.argv) > 3 else items
    payload = "x" * size
    with tempfile.TemporaryDirectory() as folder:
        conn = duckdb.connect(os.path.join(folder, "peer.duckdb"))
        conn.execute("CREATE TABLE many (id BIGINT, payload VARCHAR)")
        rows = [(i, payload) for i in range(many)]
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO many VALUES (?, ?)", rows)
        conn.execute("COMMIT")
        line("executemany", many, time.perf_counter() - start)

        conn.execute("CREATE TABLE made (id BIGINT, payload VARCHAR)")
        start = time.perf_counter()
        conn.execute(f"INSERT INTO made SELECT i, repeat('x', {size}) FROM range({items}) t(i)")
        line("insert-select", items, time.perf_counter() - start)

        start = time.perf_counter()
        got = conn.execute("SELECT * FROM made").fetchall()
        line("out", len(got), time.perf_counter() - start)
        conn.close()


if __name__ == "__main__":
    main()
