"""Starts a real pynumaflow 0.14.0 reduce-stream server for the Dataflow tests.

Usage: serve_reduce_stream.py SOCKET SERVER_INFO_FILE

Per keys and window, one message per datum as it arrives: "<count>:<running sum of
int values>", with the keys.
"""

import sys

from pynumaflow import reducestreamer


async def running_sum(keys, datums, output, md):
    count, total = 0, 0
    async for d in datums:
        count += 1
        total += int(d.value.decode())
        await output.put(reducestreamer.Message(f"{count}:{total}".encode(), keys=keys))


def main():
    sock, info = sys.argv[1], sys.argv[2]
    server = reducestreamer.ReduceStreamAsyncServer(
        running_sum, sock_path=sock, server_info_file=info
    )
    server.start()


if __name__ == "__main__":
    main()
