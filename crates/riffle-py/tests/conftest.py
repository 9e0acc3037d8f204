"""Helpers shared by the tests: build a flow of one input, some steps and one
TestingSink, run it, return what the sink received."""

import pytest

import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main


def run_steps(items, build, batch_size=1):
    """Runs ``build(stream) -> stream`` over ``items``; returns the output list."""
    flow = Dataflow("test")
    out = []
    stream = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    op.output("out", build(stream), TestingSink(out))
    run_main(flow)
    return out


@pytest.fixture
def run():
    return run_steps
