"""The `kafka` workload of `riffle bench kafka`, on bytewax 0.21.1's Kafka connector.

Reads the input topic `riffle bench kafka` filled (riffle-bench-{items}x{size}-p{partitions})
with `bytewax.connectors.kafka.KafkaSource` (tail=False), copies each message's key and
value into a `KafkaSinkMessage`, and writes them with `KafkaSink` to a fresh topic of
as many partitions. Prints one JSON line per run with Riffle's field names.

    python kafka.py --brokers HOST:PORT --items N --workers W [--size 100] [--partitions 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from importlib.metadata import version

from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    source_topic = f"riffle-bench-{args.items}x{args.size}-p{args.partitions}"
    output = f"bytewax-bench-out-{time.time_ns()}"
    admin = AdminClient({"bootstrap.servers": args.brokers})
    for future in admin.create_topics([NewTopic(output, args.partitions, 1)]).values():
        future.result()

    flow = Dataflow("bench-kafka")
    messages = op.input(
        "in", flow, KafkaSource([args.brokers], [source_topic], tail=False, batch_size=10_000)
    )
    records = op.map("copy", messages, lambda m: KafkaSinkMessage(key=m.key, value=m.value))
    op.output("out", records, KafkaSink([args.brokers], output))

    started = time.perf_counter()
    if args.workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=args.workers)
    seconds = time.perf_counter() - started
    for future in admin.delete_topics([output]).values():
        future.result()
    print(
        json.dumps(
            {
                "workload": "kafka",
                "workers": args.workers,
                "items": args.items,
                "seconds": seconds,
                "items_per_s": args.items / seconds,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "engine": f"bytewax {version('bytewax')}",
                "delivery": "at-least-once",
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
