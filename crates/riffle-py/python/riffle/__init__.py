"""Riffle's streaming dataflows from Python.

A dataflow is built with the operators of :mod:`riffle.operators` and run by the
Rust engine; Python runs only the functions you pass to the operators. The modules
have the shape of bytewax's, so a bytewax dataflow moves over by changing imports:

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, TestingSink, run_main
>>> flow = Dataflow("shout")
>>> words = op.input("inp", flow, TestingSource(["a", "b", "c"]))
>>> upper = op.map("upper", words, str.upper)
>>> out = []
>>> op.output("out", upper, TestingSink(out))
>>> run_main(flow)
>>> out
['A', 'B', 'C']

When a function raises while the flow runs, :func:`riffle.testing.run_main`
raises :class:`RiffleError`, naming the step; its ``__cause__`` is the exception
your function raised, with its traceback.
"""

from riffle._riffle import RiffleError

__all__ = ["RiffleError"]
