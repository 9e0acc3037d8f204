"""The peer of `riffle bench connector-objects` on S3: boto3 putting the same
lines (the same JSON text, byte for byte) into the same number of objects under a
fresh prefix of one bucket, then getting every object and counting its lines, on
`threads` threads, against one endpoint. No recovery store and no staging: one
PUT per object, the least a client can do. Prints one JSON line per phase, fields
as riffle's reports.

    python bench/objects_peer.py ENDPOINT BUCKET ITEMS OBJECTS THREADS

Keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
"""

import json
import os
import sys
import threading
import time

import boto3


def line(i: int) -> str:
    """Line `i`, the same text as riffle's bench (serde_json's compact JSON)."""
    row = {"id": i, "key": f"key-{i % 1000}", "value": i * 0.5, "note": "x" * 48}
    return json.dumps(row, separators=(",", ":"))


def client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def main() -> None:
    endpoint, bucket = sys.argv[1], sys.argv[2]
    items, objects, threads = int(sys.argv[3]), max(1, int(sys.argv[4])), int(sys.argv[5])
    prefix = f"boto3-bench-{time.time_ns()}"
    keys = [f"{prefix}/part-{n:05}.jsonl" for n in range(objects)]
    # Made before the clock starts, as riffle's generator makes its lines while
    # it runs: this favours the peer a little.
    bodies = [
        "".join(line(i) + "\n" for i in range(n, items, objects)).encode()
        for n in range(objects)
    ]
    size = sum(len(b) for b in bodies)
    mine = [list(range(t, objects, threads)) for t in range(threads)]
    lines_read = [0] * threads

    def put(t: int) -> None:
        s3 = client(endpoint)
        for n in mine[t]:
            s3.put_object(Bucket=bucket, Key=keys[n], Body=bodies[n])

    def get(t: int) -> None:
        s3 = client(endpoint)
        for n in mine[t]:
            body = s3.get_object(Bucket=bucket, Key=keys[n])["Body"].read()
            lines_read[t] += sum(1 for x in body.splitlines() if json.loads(x))

    for phase, target in (("into", put), ("out", get)):
        started = time.monotonic()
        workers = [threading.Thread(target=target, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.monotonic() - started
        n = items if phase == "into" else sum(lines_read)
        print(json.dumps({
            "workload": "boto3-objects", "phase": phase, "workers": threads, "items": n,
            "seconds": round(seconds, 3), "items_per_s": round(n / seconds, 1),
            "objects": objects, "bytes": size,
        }), flush=True)


if __name__ == "__main__":
    main()
