"""The examples in the package's docstrings run and give what they show."""

import doctest

import pytest

import riffle
import riffle.connectors.files
import riffle.connectors.stdio
import riffle.inputs
import riffle.outputs
import riffle.recovery
import riffle.run
import riffle.dataflow
import riffle.operators
import riffle.operators.windowing
import riffle.testing


@pytest.mark.parametrize(
    "module",
    [riffle, riffle.dataflow, riffle.operators, riffle.operators.windowing, riffle.testing, riffle.connectors.stdio,
     riffle.connectors.files, riffle.inputs, riffle.outputs, riffle.recovery, riffle.run],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    # A module's examples share one namespace, the module docstring's first: the
    # operators' examples use the helper their module docstring defines.
    tests = sorted(doctest.DocTestFinder().find(module), key=lambda t: t.name != module.__name__)
    shared = dict(module.__dict__)
    runner = doctest.DocTestRunner()
    for test in tests:
        test.globs = shared
        runner.run(test, clear_globs=False)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0
