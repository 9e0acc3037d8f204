"""riffle.connectors.kafka against the test setup's Kafka broker
(RIFFLE_TEST_KAFKA_BROKERS; the tests that need it skip without it): messages
written by KafkaSink are read back by KafkaSource, partitions spread over
workers, and a run under a recovery store resumes at the offsets it committed."""

import os
import uuid
from datetime import timedelta

import pytest

import riffle.connectors.kafka.operators as kop
import riffle.operators as op
from riffle import RiffleError
from riffle.connectors.kafka import (
    OFFSET_BEGINNING,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
    _create_topic,
)
from riffle.dataflow import Dataflow
from riffle.recovery import RecoveryConfig, init_db_dir
from riffle.run import cli_main
from riffle.testing import TestingSink, TestingSource, run_main

BROKERS = os.environ.get("RIFFLE_TEST_KAFKA_BROKERS")
needs_kafka = pytest.mark.skipif(not BROKERS, reason="RIFFLE_TEST_KAFKA_BROKERS is unset")
EPOCH = timedelta(milliseconds=50)


def topic(name, partitions):
    """A new topic, unique to this run of the test."""
    name = f"riffle-py-{name}-{uuid.uuid4().hex[:8]}"
    assert _create_topic([BROKERS], name, partitions)
    return name


def produce(to, items):
    """Writes `items` (sink messages or (key, value) pairs) to topic `to`."""
    flow = Dataflow("produce")
    op.output("out", op.input("inp", flow, TestingSource(items, batch_size=7)), KafkaSink([BROKERS], to))
    run_main(flow)


def read(name, **kwargs):
    """Every message of topic `name` up to its current end."""
    flow = Dataflow("read")
    out = []
    op.output("out", op.input("inp", flow, KafkaSource([BROKERS], [name], tail=False)), TestingSink(out))
    run_main(flow, **kwargs)
    return out


@needs_kafka
def test_messages_go_through_a_flow_from_topic_to_topic():
    source, sink = topic("in", 3), topic("out", 2)
    items = [KafkaSinkMessage(f"k{i}", f"v{i}".encode(), headers=[("n", str(i))]) for i in range(20)]
    items += [(b"tuple", b"t1"), (None, "t2"), ("tomb", None)]
    produce(source, items)

    flow = Dataflow("copy")
    seen, errs = [], []
    ins = kop.input("inp", flow, brokers=[BROKERS], topics=[source], tail=False, starting_offset=OFFSET_BEGINNING)
    op.output("errs", ins.errs, TestingSink(errs))
    shout = op.map("shout", op.inspect("seen", ins.oks, lambda _step, m: seen.append(m)),
                   lambda m: KafkaSinkMessage(m.key, m.value and m.value.upper(), headers=m.headers))
    kop.output("out", shout, brokers=[BROKERS], topic=sink)
    cli_main(flow, workers_per_process=2)

    assert errs == []
    assert all(isinstance(m, KafkaSourceMessage) for m in seen)
    assert len(seen) == 23
    assert {m.partition for m in seen} == {0, 1, 2}
    assert all(m.topic == source and isinstance(m.timestamp, int) for m in seen)
    # Within a partition, offsets run from 0 without a gap.
    for p in range(3):
        offsets = sorted(m.offset for m in seen if m.partition == p)
        assert offsets == list(range(len(offsets)))
    # One key always lands in one partition.
    k3 = [m for m in seen if m.key == b"k3"]
    assert [(m.value, m.headers) for m in k3] == [(b"v3", [("n", b"3")])]
    assert k3[0].to_sink() == KafkaSinkMessage(b"k3", b"v3", headers=[("n", b"3")])
    assert {(m.key, m.value) for m in seen if not (m.key or b"").startswith(b"k")} == {
        (b"tuple", b"t1"), (None, b"t2"), (b"tomb", None)}

    back = read(sink)
    assert len(back) == 23
    assert {(m.key, m.value) for m in back} == {
        (f"k{i}".encode(), f"V{i}".encode()) for i in range(20)} | {(b"tuple", b"T1"), (None, b"T2"), (b"tomb", None)}
    assert [m.headers for m in back if m.key == b"k7"] == [[("n", b"7")]]


@needs_kafka
def test_a_run_under_recovery_resumes_at_its_committed_offsets(tmp_path):
    name = topic("resume", 2)
    db = tmp_path / "db"
    init_db_dir(db, 2)

    def run(fail_on=None):
        flow = Dataflow("resume")
        out = []

        def check(m):
            if m.value == fail_on:
                raise RuntimeError("stop here")
            return m.value

        values = op.map("value", op.input("inp", flow, KafkaSource([BROKERS], [name], tail=False)), check)
        op.output("out", values, TestingSink(out))
        run_main(flow, epoch_interval=EPOCH, recovery_config=RecoveryConfig(db))
        return out

    produce(name, [(f"k{i}", f"a{i}") for i in range(10)])
    assert sorted(run()) == sorted(f"a{i}".encode() for i in range(10))
    # A second run reads only what came after the first run's end.
    produce(name, [(f"k{i}", f"b{i}") for i in range(5)])
    assert sorted(run()) == sorted(f"b{i}".encode() for i in range(5))
    # A run that fails part-way resumes from its last committed snapshot:
    # nothing is lost, and what the first run did not get past comes again.
    produce(name, [(f"k{i}", f"c{i}") for i in range(8)])
    with pytest.raises(RiffleError, match="value"):
        run(fail_on=b"c5")
    again = run()
    assert b"c5" in again
    assert set(again) <= {f"c{i}".encode() for i in range(8)}


@needs_kafka
def test_a_bad_item_for_the_sink_stops_the_run_naming_the_step():
    name = topic("bad", 1)
    flow = Dataflow("bad")
    items = op.input("inp", flow, TestingSource([(b"k", 3)]))
    op.output("out", items, KafkaSink([BROKERS], name))
    with pytest.raises(RiffleError, match="out") as info:
        run_main(flow)
    assert "bytes, str or None" in str(info.value.__cause__)
    flow = Dataflow("other")
    items = op.input("inp", flow, TestingSource([KafkaSinkMessage(b"k", b"v", topic="elsewhere")]))
    op.output("out", items, KafkaSink([BROKERS], name))
    with pytest.raises(RiffleError, match="out") as info:
        run_main(flow)
    assert "elsewhere" in str(info.value.__cause__)
    assert read(name) == []


def test_bad_arguments_are_refused_when_the_flow_is_built():
    with pytest.raises(ValueError, match="starting_offset"):
        KafkaSource(["127.0.0.1:9"], ["t"], starting_offset=5)
    with pytest.raises(ValueError, match="topics"):
        KafkaSource(["127.0.0.1:9"], [])
    with pytest.raises(ValueError, match="brokers"):
        KafkaSink([], "t")
    with pytest.raises(ValueError, match="one topic"):
        KafkaSink(["127.0.0.1:9"], None)
    with pytest.raises(TypeError, match="add_config"):
        kop.input("inp", Dataflow("f"), brokers="127.0.0.1:9", topics="t", add_config=[("a", "b")])
