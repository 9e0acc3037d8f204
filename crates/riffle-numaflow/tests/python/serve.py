"""Starts one real pynumaflow 0.14.0 server for the conformance tests.

Usage: serve.py KIND SOCKET SERVER_INFO_FILE

Every UDF here has behaviour the Rust tests check exactly:
  map-sync, map-async: upper-case the value, keep the keys, tag "py"; "drop" is
      dropped; "boom" raises.
  map-multiproc: two server processes; upper-case the value, keep the keys, tag "py"
      and "pid<N>" with the answering process's id.
  map-stream: one message per comma-separated part of the value.
  batch-map: the value with "!" appended, answered by id.
  reduce: per keys and window, "<count>:<sum of int values>".
  sink: "fail" fails with "refused", "fb" goes to fallback, the rest succeed.
  source: ten messages "m0".."m9" on partition 0; acks reduce the pending count.
  transform: upper-cased value, event time moved to 2024-01-01T00:00:00Z + len(value) s.
  accumulator: each key's values numbered in arrival order ("v#1", "v#2", ...), tag "py".
  sideinput: "side-1", "side-3", ... on odd calls; no broadcast on even calls.
"""

import datetime
import os
import sys

from pynumaflow import accumulator, mapper, mapstreamer, batchmapper, reducer, sinker, sourcer
from pynumaflow import sourcetransformer, sideinput


def map_handler(keys, datum):
    if datum.value == b"boom":
        raise ValueError("boom requested by the test")
    if datum.value == b"drop":
        return mapper.Messages(mapper.Message.to_drop())
    return mapper.Messages(mapper.Message(datum.value.upper(), keys=keys, tags=["py"]))


def multiproc_map_handler(keys, datum):
    tags = ["py", f"pid{os.getpid()}"]
    return mapper.Messages(mapper.Message(datum.value.upper(), keys=keys, tags=tags))


async def async_map_handler(keys, datum):
    return map_handler(keys, datum)


async def map_stream_handler(keys, datum):
    for part in datum.value.split(b","):
        yield mapstreamer.Message(part, keys=keys)


async def batch_map_handler(datums):
    responses = batchmapper.BatchResponses()
    async for datum in datums:
        response = batchmapper.BatchResponse.from_id(datum.id)
        response.append(batchmapper.Message(datum.value + b"!", keys=datum.keys))
        responses.append(response)
    return responses


async def reduce_handler(keys, datums, md):
    count = 0
    total = 0
    async for datum in datums:
        count += 1
        total += int(datum.value)
    return reducer.Messages(reducer.Message(f"{count}:{total}".encode(), keys=keys))


async def sink_handler(datums):
    responses = sinker.Responses()
    async for datum in datums:
        if datum.value == b"fail":
            responses.append(sinker.Response.as_failure(datum.id, "refused"))
        elif datum.value == b"fb":
            responses.append(sinker.Response.as_fallback(datum.id))
        else:
            responses.append(sinker.Response.as_success(datum.id))
    return responses


class TenMessages(sourcer.Sourcer):
    def __init__(self):
        self.next = 0
        self.acked = set()

    async def read_handler(self, request, output):
        for _ in range(request.num_records):
            if self.next >= 10:
                return
            i = self.next
            self.next += 1
            await output.put(
                sourcer.Message(
                    payload=f"m{i}".encode(),
                    offset=sourcer.Offset(str(i).encode(), 0),
                    event_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
                    keys=["k"],
                )
            )

    async def ack_handler(self, request):
        for offset in request.offsets:
            self.acked.add(offset.offset)

    async def nack_handler(self, request):
        for offset in request.offsets:
            self.acked.discard(offset.offset)

    async def pending_handler(self):
        return sourcer.PendingResponse(count=10 - len(self.acked))

    async def active_partitions_handler(self):
        return sourcer.PartitionsResponse(partitions=[0])


def transform_handler(keys, datum):
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    moved = base + datetime.timedelta(seconds=len(datum.value))
    return sourcetransformer.Messages(
        sourcetransformer.Message(datum.value.upper(), event_time=moved, keys=keys)
    )


class Numbered(accumulator.Accumulator):
    async def handler(self, datums, output):
        n = 0
        async for d in datums:
            n += 1
            await output.put(
                accumulator.Message(
                    d.value + b"#%d" % n, keys=d.keys, tags=["py"],
                    watermark=d.watermark, event_time=d.event_time, id=d.id,
                )
            )


class EveryOther(sideinput.SideInput):
    def __init__(self):
        self.calls = 0

    def retrieve_handler(self):
        self.calls += 1
        if self.calls % 2 == 0:
            return sideinput.Response.no_broadcast_message()
        return sideinput.Response.broadcast_message(f"side-{self.calls}".encode())


def main():
    kind, sock, info = sys.argv[1], sys.argv[2], sys.argv[3]
    common = {"sock_path": sock, "server_info_file": info}
    if kind == "map-sync":
        server = mapper.MapServer(map_handler, **common)
    elif kind == "map-multiproc":
        # pynumaflow binds /var/run/numaflow/multiproc{i}.sock whatever sock_path says;
        # move that folder to the test's own, keeping pynumaflow's file names.
        from pynumaflow.shared import server as shared_server

        shared_server.MULTIPROC_MAP_SOCK_ADDR = os.path.join(os.path.dirname(sock), "multiproc")
        server = mapper.MapMultiprocServer(multiproc_map_handler, server_count=2, **common)
    elif kind == "map-async":
        server = mapper.MapAsyncServer(async_map_handler, **common)
    elif kind == "map-stream":
        server = mapstreamer.MapStreamAsyncServer(map_stream_handler, **common)
    elif kind == "batch-map":
        server = batchmapper.BatchMapAsyncServer(batch_map_handler, **common)
    elif kind == "reduce":
        server = reducer.ReduceAsyncServer(reduce_handler, **common)
    elif kind == "sink":
        server = sinker.SinkAsyncServer(sink_handler, **common)
    elif kind == "source":
        server = sourcer.SourceAsyncServer(TenMessages(), **common)
    elif kind == "transform":
        server = sourcetransformer.SourceTransformServer(transform_handler, **common)
    elif kind == "accumulator":
        server = accumulator.AccumulatorAsyncServer(Numbered, **common)
    elif kind == "sideinput":
        server = sideinput.SideInputServer(EveryOther(), **common)
    else:
        raise SystemExit(f"unknown kind {kind}")
    server.start()


if __name__ == "__main__":
    main()
