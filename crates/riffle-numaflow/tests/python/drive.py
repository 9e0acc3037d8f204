"""Drives a UDF server with pynumaflow 0.14.0's own generated gRPC stubs.

Usage: drive.py KIND SOCKET

Prints one JSON object describing everything the server answered; the Rust test
that started the server checks it. Bytes are decoded as UTF-8 for readability.
"""

import json
import sys

import grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from pynumaflow.proto.accumulator import accumulator_pb2, accumulator_pb2_grpc
from pynumaflow.proto.mapper import map_pb2, map_pb2_grpc
from pynumaflow.proto.reducer import reduce_pb2, reduce_pb2_grpc
from pynumaflow.proto.sideinput import sideinput_pb2_grpc
from pynumaflow.proto.sinker import sink_pb2, sink_pb2_grpc
from pynumaflow.proto.sourcer import source_pb2, source_pb2_grpc
from pynumaflow.proto.sourcetransformer import transform_pb2, transform_pb2_grpc

# grpc-python sends the socket path as the HTTP/2 :authority on Unix sockets, which
# the Rust HTTP/2 stack rejects as malformed; Numaflow's own data plane sends a valid
# authority, and so does this client once told to.
OPTIONS = [
    ("grpc.default_authority", "localhost"),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def ts(seconds):
    t = Timestamp()
    t.FromSeconds(seconds)
    return t


def map_request(id_, value, keys=()):
    return map_pb2.MapRequest(
        id=id_,
        request=map_pb2.MapRequest.Request(
            keys=list(keys), value=value.encode(), event_time=ts(1000), watermark=ts(999),
            headers={"h": "v"},
        ),
    )


def map_responses(responses):
    out = []
    for r in responses:
        out.append({
            "id": r.id,
            "handshake": r.HasField("handshake") and r.handshake.sot,
            "eot": r.HasField("status") and r.status.eot,
            "results": [
                {"keys": list(x.keys), "value": x.value.decode(), "tags": list(x.tags)}
                for x in r.results
            ],
        })
    return out


def drive_map(stub, values, eot=False):
    requests = [map_pb2.MapRequest(handshake=map_pb2.Handshake(sot=True))]
    requests += [map_request(str(i), v, keys=[f"k{i}"]) for i, v in enumerate(values)]
    if eot:
        requests.append(map_pb2.MapRequest(status=map_pb2.TransmissionStatus(eot=True)))
    return map_responses(stub.MapFn(iter(requests)))


def call_error(fn):
    try:
        fn()
        return None
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


def main():
    kind, sock = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(f"unix://{sock}", options=OPTIONS)
    out = {}
    if kind in ("map", "map-stream", "batch-map"):
        stub = map_pb2_grpc.MapStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        values = ["hello", "drop", "a,b"]
        out["responses"] = drive_map(stub, values, eot=(kind == "batch-map"))
        if kind == "map":
            out["no_handshake"] = call_error(lambda: list(stub.MapFn(iter([map_request("x", "y")]))))
            out["boom"] = call_error(lambda: drive_map(stub, ["boom"]))
            out["after_boom"] = drive_map(stub, ["still", "serving"])
            big = "x" * (5 * 1024 * 1024)
            out["big_len"] = len(drive_map(stub, [big])[1]["results"][0]["value"])
    elif kind == "transform":
        stub = transform_pb2_grpc.SourceTransformStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        Req = transform_pb2.SourceTransformRequest
        requests = [Req(handshake=transform_pb2.Handshake(sot=True))]
        for i, v in enumerate(["abc", "hello"]):
            requests.append(Req(request=Req.Request(id=f"t{i}", keys=["k"], value=v.encode(), event_time=ts(5))))
        out["responses"] = [
            {
                "id": r.id,
                "handshake": r.HasField("handshake") and r.handshake.sot,
                "results": [
                    {"value": x.value.decode(), "keys": list(x.keys), "event_time": x.event_time.seconds}
                    for x in r.results
                ],
            }
            for r in stub.SourceTransformFn(iter(requests))
        ]
    elif kind == "sink":
        stub = sink_pb2_grpc.SinkStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        Req = sink_pb2.SinkRequest
        requests = [Req(handshake=sink_pb2.Handshake(sot=True))]
        for batch in range(2):
            for i, v in enumerate(["ok", "fail", "fb"]):
                requests.append(Req(request=Req.Request(id=f"{batch}-{i}", value=v.encode())))
            requests.append(Req(status=sink_pb2.TransmissionStatus(eot=True)))
        out["responses"] = [
            {
                "handshake": r.HasField("handshake") and r.handshake.sot,
                "eot": r.HasField("status") and r.status.eot,
                "results": [
                    {"id": x.id, "status": sink_pb2.Status.Name(x.status), "err_msg": x.err_msg}
                    for x in r.results
                ],
            }
            for r in stub.SinkFn(iter(requests))
        ]
    elif kind == "source":
        stub = source_pb2_grpc.SourceStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        out["pending_before"] = stub.PendingFn(empty_pb2.Empty()).result.count
        out["partitions"] = list(stub.PartitionsFn(empty_pb2.Empty()).result.partitions)
        R = source_pb2.ReadRequest
        reads = [R(handshake=source_pb2.Handshake(sot=True)),
                 R(request=R.Request(num_records=4, timeout_in_ms=100)),
                 R(request=R.Request(num_records=100, timeout_in_ms=100))]
        read_out = []
        offsets = []
        for r in stub.ReadFn(iter(reads)):
            item = {"handshake": r.HasField("handshake") and r.handshake.sot, "eot": r.status.eot}
            if r.HasField("result"):
                item["payload"] = r.result.payload.decode()
                item["keys"] = list(r.result.keys)
                offsets.append(r.result.offset)
            read_out.append(item)
        out["reads"] = read_out
        A = source_pb2.AckRequest
        acks = [A(handshake=source_pb2.Handshake(sot=True)), A(request=A.Request(offsets=offsets[:4]))]
        out["acks"] = [
            {"handshake": r.HasField("handshake") and r.handshake.sot, "success": r.result.HasField("success")}
            for r in stub.AckFn(iter(acks))
        ]
        out["pending_after"] = stub.PendingFn(empty_pb2.Empty()).result.count
        N = source_pb2.NackRequest
        stub.NackFn(N(request=N.Request(offsets=offsets[:1])))
        out["pending_after_nack"] = stub.PendingFn(empty_pb2.Empty()).result.count
    elif kind == "reduce":
        stub = reduce_pb2_grpc.ReduceStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        R = reduce_pb2.ReduceRequest
        window = reduce_pb2.Window(start=ts(60), end=ts(120), slot="slot-0")
        requests = []
        seen = set()
        for i in range(1, 11):
            key = "even" if i % 2 == 0 else "odd"
            event = R.WindowOperation.OPEN if key not in seen else R.WindowOperation.APPEND
            seen.add(key)
            requests.append(R(
                payload=R.Payload(keys=[key], value=str(i).encode(), event_time=ts(70)),
                operation=R.WindowOperation(event=event, windows=[window]),
            ))
        out["responses"] = [
            {
                "eof": r.EOF,
                "window": [r.window.start.seconds, r.window.end.seconds],
                "keys": list(r.result.keys),
                "value": r.result.value.decode(),
            }
            for r in stub.ReduceFn(iter(requests))
        ]
    elif kind == "accumulator":
        stub = accumulator_pb2_grpc.AccumulatorStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        R = accumulator_pb2.AccumulatorRequest
        Op = R.WindowOperation

        def window(keys):
            return accumulator_pb2.KeyedWindow(start=ts(0), end=ts(100), slot="slot-0", keys=keys)

        def req(event, keys, value=None, wm=0):
            payload = None
            if value is not None:
                payload = accumulator_pb2.Payload(
                    keys=keys, value=value.encode(), event_time=ts(wm), watermark=ts(wm), id=value
                )
            return R(payload=payload, operation=Op(event=event, keyedWindow=window(keys)))

        requests = [
            req(Op.OPEN, ["a"], "a1", 10),
            req(Op.APPEND, ["a"], "a2", 20),
            req(Op.OPEN, ["b"], "b1", 15),
            req(Op.CLOSE, ["a"]),
            req(Op.APPEND, ["b"], "b2", 30),
        ]
        out["responses"] = [
            {
                "eof": r.EOF,
                "keys": list(r.window.keys),
                "window_end": r.window.end.seconds,
                "value": r.payload.value.decode(),
                "tags": list(r.tags),
            }
            for r in stub.AccumulateFn(iter(requests))
        ]
    elif kind == "sideinput":
        stub = sideinput_pb2_grpc.SideInputStub(channel)
        out["ready"] = stub.IsReady(empty_pb2.Empty()).ready
        out["values"] = []
        for _ in range(3):
            r = stub.RetrieveSideInput(empty_pb2.Empty())
            out["values"].append({"value": r.value.decode(), "no_broadcast": r.no_broadcast})
    else:
        raise SystemExit(f"unknown kind {kind}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
