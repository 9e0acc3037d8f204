"""Dataflows and their streams.

A :class:`Dataflow` is a description: each function of :mod:`riffle.operators`
adds a step with a step id (unique in the flow, without ``.``) and returns the
:class:`Stream` it produces. Nothing runs until :func:`riffle.testing.run_main`.

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource
>>> flow = Dataflow("numbers")
>>> nums = op.input("inp", flow, TestingSource([1, 2, 3]))
>>> nums.stream_id
'numbers.inp.down'

:meth:`Stream.then` chains steps: ``up.then(op.map, "double", f)`` is
``op.map("double", up, f)``.

>>> doubled = nums.then(op.map, "double", lambda x: x * 2)
>>> [step[0] for step in flow.steps()]
['inp', 'double']

A keyed stream is a stream of ``(key, value)`` 2-tuples whose keys are ``str``;
:data:`KeyedStream` names it in type hints.
"""

from riffle._riffle import Dataflow, Stream

#: A stream of ``(key, value)`` pairs with ``str`` keys.
KeyedStream = Stream

__all__ = ["Dataflow", "KeyedStream", "Stream"]
