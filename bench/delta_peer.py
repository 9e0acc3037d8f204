"""The peer of `riffle bench connector-delta`: the same rows written to a fresh
Delta table by the `deltalake` package (delta-rs, `write_deltalake`, one append of
one pyarrow table: the rows are built before the clock starts), then read back with
pyarrow. One JSON line per phase, the fields of riffle's reports.

    python bench/delta_peer.py ROWS
"""
import json
import sys
import tempfile
import time

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

rows = int(sys.argv[1])
table = pa.table(
    {
        "id": pa.array(range(rows), pa.int64()),
        "key": [f"key-{i % 1000}" for i in range(rows)],
        "value": [i * 0.5 for i in range(rows)],
    }
)
with tempfile.TemporaryDirectory() as folder:
    started = time.perf_counter()
    write_deltalake(folder, table, mode="append")
    seconds = time.perf_counter() - started
    print(json.dumps({"workload": "deltalake-write", "workers": 1, "items": rows,
                      "seconds": seconds, "items_per_s": rows / seconds, "phase": "into"}))
    started = time.perf_counter()
    read = DeltaTable(folder).to_pyarrow_table()
    seconds = time.perf_counter() - started
    print(json.dumps({"workload": "deltalake-read", "workers": 1, "items": read.num_rows,
                      "seconds": seconds, "items_per_s": read.num_rows / seconds, "phase": "out"}))
