"""The peer of `riffle bench connector-sqs`: boto3 making the same calls with the
same batch sizes (SendMessageBatch of 10, then ReceiveMessage of 10 with each
batch deleted by DeleteMessageBatch), on `threads` threads, against one endpoint.
Prints one JSON line per phase, fields as riffle's reports.

    python bench/sqs_peer.py ENDPOINT ITEMS THREADS
"""

import json
import sys
import threading
import time

import boto3


def main() -> None:
    endpoint, items, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="riffle-bench",
        aws_secret_access_key="riffle-bench",
    )
    url = sqs.create_queue(QueueName=f"boto3-bench-{time.time_ns()}")["QueueUrl"]
    body = "x" * 100
    per_thread = [items // threads + (1 if t < items % threads else 0) for t in range(threads)]

    def send(n: int) -> None:
        client = boto3.client(
            "sqs", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="riffle-bench", aws_secret_access_key="riffle-bench",
        )
        for start in range(0, n, 10):
            entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, n - start))]
            client.send_message_batch(QueueUrl=url, Entries=entries)

    received = [0] * threads

    def receive(t: int) -> None:
        client = boto3.client(
            "sqs", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="riffle-bench", aws_secret_access_key="riffle-bench",
        )
        empty = 0
        while empty < 2:
            got = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
            ).get("Messages", [])
            if not got:
                empty += 1
                continue
            empty = 0
            received[t] += len(got)
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )

    for phase, target, args in (
        ("into", send, per_thread),
        ("out", receive, range(threads)),
    ):
        started = time.monotonic()
        workers = [threading.Thread(target=target, args=(a,)) for a in args]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.monotonic() - started
        n = items if phase == "into" else sum(received)
        print(json.dumps({
            "workload": "boto3-sqs", "phase": phase, "workers": threads, "items": n,
            "seconds": round(seconds, 3), "items_per_s": round(n / seconds, 1),
            "batch": 10, "bytes_per_message": 100,
        }), flush=True)
    sqs.delete_queue(QueueUrl=url)


if __name__ == "__main__":
    main()
