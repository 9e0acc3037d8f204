"""The serde operators of riffle.connectors.kafka.operators and the serdes of
riffle.connectors.kafka.serde: objects serialized into a real Kafka topic
(RIFFLE_TEST_KAFKA_BROKERS; those tests skip without it) come back equal
through the source and the deserialize operators, messages that fail to decode
land on `errs` with the reason and the message as read while the rest go on,
and a serializer that raises stops the run naming its step."""

import doctest
import os
import pickle
import struct
import uuid

import pytest

import riffle.connectors.kafka.operators as kop
import riffle.connectors.kafka.serde as serde
import riffle.operators as op
from riffle import RiffleError
from riffle.connectors.kafka import (
    KafkaError,
    KafkaSerdeError,
    KafkaSinkMessage,
    KafkaSourceMessage,
    _create_topic,
)
from riffle.connectors.kafka.serde import JsonDeserializer, JsonSerializer, MessageField, SchemaDeserializer
from riffle.dataflow import Dataflow
from riffle.run import cli_main
from riffle.testing import TestingSink, TestingSource, run_main

BROKERS = os.environ.get("RIFFLE_TEST_KAFKA_BROKERS")
needs_kafka = pytest.mark.skipif(not BROKERS, reason="RIFFLE_TEST_KAFKA_BROKERS is unset")


def topic(name, partitions=1):
    """A new topic, unique to this run of the test."""
    name = f"riffle-py-serde-{name}-{uuid.uuid4().hex[:8]}"
    assert _create_topic([BROKERS], name, partitions)
    return name


def write(to, items, build=lambda s: s):
    """Writes `items` through `build` (serialize steps) to topic `to`."""
    flow = Dataflow("write")
    kop.output("out", build(op.input("inp", flow, TestingSource(items, batch_size=3))), brokers=[BROKERS], topic=to)
    run_main(flow)


def read(name, build, **kwargs):
    """Runs `build(messages) -> KafkaOpOut` over topic `name` to its current
    end; returns (oks, errs)."""
    flow = Dataflow("read")
    oks, errs = [], []
    out = build(kop.input("inp", flow, brokers=[BROKERS], topics=[name], tail=False).oks)
    op.output("oks", out.oks, TestingSink(oks))
    op.output("errs", out.errs, TestingSink(errs))
    cli_main(flow, **kwargs)
    return oks, errs


class BigEndianId(SchemaDeserializer):
    """A user's own deserializer in the `de` shape: 8-byte big-endian ints."""

    def de(self, data):
        if data is None or len(data) != 8:
            raise ValueError(f"an id is 8 bytes; got {data!r}")
        return struct.unpack(">q", data)[0]


class TaggingSerializer:
    """A serializer in the (obj, ctx) shape that records what it was told."""

    def __init__(self):
        self.seen = []

    def __call__(self, obj, ctx):
        self.seen.append((ctx.topic, ctx.field))
        return f"{ctx.field}={obj}".encode()


@needs_kafka
def test_json_keys_and_values_round_trip_through_a_topic():
    name = topic("json", partitions=2)
    orders = [({"customer": i % 3}, {"id": i, "items": ["tea"] * i, "total": i * 1.5, "note": None}) for i in range(12)]
    write(name, orders, lambda s: kop.serialize("ser", s, key_serializer=JsonSerializer(), val_serializer=JsonSerializer()))

    oks, errs = read(
        name,
        lambda s: kop.deserialize("de", s, key_deserializer=JsonDeserializer(), val_deserializer=JsonDeserializer()),
        workers_per_process=2,
    )
    assert errs == []
    assert all(isinstance(m, KafkaSourceMessage) and m.topic == name for m in oks)
    assert sorted(((m.key, m.value) for m in oks), key=lambda kv: kv[1]["id"]) == orders
    # The source's metadata survives decoding: offsets still run from 0 per partition.
    for p in {m.partition for m in oks}:
        assert sorted(m.offset for m in oks if m.partition == p) == list(range(sum(m.partition == p for m in oks)))


@needs_kafka
def test_a_value_that_fails_to_decode_goes_to_errs_and_the_rest_go_on():
    name = topic("bad-value")
    raw = [(b"k0", b'{"n": 0}'), (b"k1", b"{not json"), (b"k2", b'{"n": 2}'), (b"k3", None), (b"k4", b"\xff\xfe")]
    write(name, raw)

    oks, errs = read(name, lambda s: kop.deserialize_value("de", s, JsonDeserializer(allow_none=False)))
    assert [(m.key, m.value, m.offset) for m in oks] == [(b"k0", {"n": 0}, 0), (b"k2", {"n": 2}, 2)]
    assert [type(e) for e in errs] == [KafkaError] * 3
    assert [(e.msg.key, e.msg.value, e.msg.offset) for e in errs] == [(b"k1", b"{not json", 1), (b"k3", None, 3),
                                                                      (b"k4", b"\xff\xfe", 4)]
    assert all(isinstance(e.msg, KafkaSourceMessage) and e.msg.topic == name for e in errs)
    assert {e.err.code() for e in errs} == {KafkaSerdeError.VALUE_DESERIALIZATION}
    assert {e.err.field for e in errs} == {"value"}
    assert errs[0].err.str().startswith("JSONDecodeError: ")
    assert "got no data" in errs[1].err.str()
    assert errs[2].err.str().startswith("UnicodeDecodeError: ")


@needs_kafka
def test_keys_decode_with_a_users_own_deserializer_and_values_stay_bytes():
    name = topic("keys")
    raw = [(struct.pack(">q", 41), b"a"), (b"short", b"b"), (struct.pack(">q", -7), b"c"), (None, b"d")]
    write(name, raw)

    oks, errs = read(name, lambda s: kop.deserialize_key("dk", s, BigEndianId()))
    assert [(m.key, m.value) for m in oks] == [(41, b"a"), (-7, b"c")]
    assert [(e.msg.key, e.msg.value, e.err.name(), e.err.field) for e in errs] == [
        (b"short", b"b", "_KEY_DESERIALIZATION", "key"),
        (None, b"d", "_KEY_DESERIALIZATION", "key"),
    ]
    assert "an id is 8 bytes; got b'short'" in errs[0].err.str()


@needs_kafka
def test_deserialize_reports_whichever_of_key_and_value_failed_with_the_original_message():
    name = topic("both")
    raw = [(b'"a"', b"[1]"), (b"nope", b"[2]"), (b'"c"', b"nope"), (b"nope", b"nope")]
    write(name, raw)

    oks, errs = read(
        name,
        lambda s: kop.deserialize("de", s, key_deserializer=JsonDeserializer(), val_deserializer=JsonDeserializer()),
    )
    assert [(m.key, m.value) for m in oks] == [("a", [1])]
    # The key is tried first; the message in the error is the bytes as read.
    assert [(e.msg.key, e.msg.value, e.err.field) for e in errs] == [
        (b"nope", b"[2]", "key"),
        (b'"c"', b"nope", "value"),
        (b"nope", b"nope", "key"),
    ]


@needs_kafka
def test_serialize_key_and_value_see_their_topic_and_field_and_take_source_messages():
    source, sink = topic("copy-in"), topic("copy-out")
    write(source, [(b"1", b"one"), (b"2", b"two")])

    keys, values = TaggingSerializer(), TaggingSerializer()
    flow = Dataflow("copy")
    msgs = kop.input("inp", flow, brokers=[BROKERS], topics=[source], tail=False).oks
    decoded = kop.deserialize_value("de", msgs, lambda data, ctx: data.decode().upper()).oks
    # Source messages pass straight to the serializers, made sink messages on the way.
    by_key = kop.serialize_key("sk", decoded, keys)
    kop.output("out", kop.serialize_value("sv", by_key, values), brokers=[BROKERS], topic=sink)
    run_main(flow)

    oks, errs = read(sink, lambda s: kop.deserialize_value("de", s, lambda data, ctx: data))
    assert errs == []
    assert [(m.key, m.value) for m in oks] == [(b"key=b'1'", b"value=ONE"), (b"key=b'2'", b"value=TWO")]
    # to_sink() leaves the topic to the sink, so the context has none.
    assert keys.seen == [(None, MessageField.KEY)] * 2
    assert values.seen == [(None, MessageField.VALUE)] * 2


def test_a_serializer_that_raises_stops_the_run_naming_its_step():
    def refuse(obj, ctx):
        raise OverflowError(f"{obj} is too big")

    flow = Dataflow("refuse")
    out = []
    msgs = op.input("inp", flow, TestingSource([KafkaSinkMessage(b"k", 10**100)]))
    op.output("out", kop.serialize_value("ser", msgs, refuse), TestingSink(out))
    with pytest.raises(RiffleError) as info:
        run_main(flow)
    assert info.value.step_id == "ser_map"
    assert isinstance(info.value.__cause__, OverflowError)
    assert out == []


def test_serialize_takes_key_value_pairs_and_rejects_other_items():
    flow = Dataflow("pairs")
    out = []
    msgs = op.input("inp", flow, TestingSource([("k", {"a": 1})]))
    op.output("out", kop.serialize_value("ser", msgs, JsonSerializer()), TestingSink(out))
    run_main(flow)
    assert out == [KafkaSinkMessage("k", b'{"a":1}')]

    flow = Dataflow("other")
    msgs = op.input("inp", flow, TestingSource(["just a string"]))
    op.output("out", kop.serialize_value("ser", msgs, JsonSerializer()), TestingSink([]))
    with pytest.raises(RiffleError) as info:
        run_main(flow)
    assert info.value.step_id == "ser_to_sink_map"
    assert "got a str" in str(info.value.__cause__)


def test_the_operators_add_bytewaxs_steps_with_underscores():
    flow = Dataflow("ids")
    msgs = op.input("inp", flow, TestingSource([]))
    kop.deserialize_key("dk", msgs, JsonDeserializer())
    kop.deserialize_value("dv", msgs, JsonDeserializer())
    kop.deserialize("d", msgs, key_deserializer=JsonDeserializer(), val_deserializer=JsonDeserializer())
    kop.serialize("s", msgs, key_serializer=JsonSerializer(), val_serializer=JsonSerializer())
    # (a branch adds parts of its own, named "<step>.<part>")
    assert [step[0] for step in flow.steps() if "." not in step[0]] == [
        "inp", "dk_map", "dk_split", "dv_map", "dv_split_err", "d_map", "d_split_err", "s_to_sink_map", "s_map",
    ]


def test_a_serde_of_neither_shape_is_refused_when_the_flow_is_built():
    flow = Dataflow("bad")
    msgs = op.input("inp", flow, TestingSource([]))
    with pytest.raises(TypeError, match='step "de": deserializer must be a callable'):
        kop.deserialize_value("de", msgs, object())
    with pytest.raises(TypeError, match='step "ser": val_serializer must be a callable'):
        kop.serialize("ser", msgs, key_serializer=JsonSerializer(), val_serializer="json")


def test_errors_survive_pickling_between_processes():
    error = KafkaError(
        KafkaSerdeError(KafkaSerdeError.KEY_DESERIALIZATION, "ValueError: bad"),
        KafkaSourceMessage(b"k", b"v", topic="t", offset=3, partition=0),
    )
    copy = pickle.loads(pickle.dumps(error))
    assert copy == error
    assert (copy.err.code(), copy.err.name(), copy.err.field) == (-160, "_KEY_DESERIALIZATION", "key")
    with pytest.raises(ValueError, match="code must be one of"):
        KafkaSerdeError(7, "no such code")


def test_plain_avro_round_trips_and_rejects_framed_data():
    pytest.importorskip("fastavro")
    schema = '{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}]}'
    ctx = serde.SerializationContext("orders", MessageField.VALUE)
    data = serde.PlainAvroSerializer(schema)({"id": 5, "item": "tea"}, ctx)
    assert serde.PlainAvroDeserializer(schema)(data, ctx) == {"id": 5, "item": "tea"}
    # Data in the schema registry's frame (a 0 byte and a 4-byte schema id) is refused.
    with pytest.raises(ValueError, match="bytes left after the record"):
        serde.PlainAvroDeserializer(schema)(b"\x00\x00\x00\x00\x01" + data, ctx)


@pytest.mark.parametrize("module", [serde, kop], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0
