"""Standard output as a sink.

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, run_main
>>> from riffle.connectors.stdio import StdOutSink
>>> flow = Dataflow("hello")
>>> op.output("out", op.input("inp", flow, TestingSource(["hello"])), StdOutSink())
>>> run_main(flow)
hello
"""

from typing import Any, List

__all__ = ["StdOutSink"]


class StdOutSink:
    """Prints every item with :func:`print`, one line each, as it is written."""

    def _write(self, items: List[Any]) -> None:
        for item in items:
            print(item)

    def __repr__(self) -> str:
        return "StdOutSink()"
