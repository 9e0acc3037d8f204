"""Batch pipelines of Python functions, cached, retried and recorded by Riffle.

A step is a function marked with :func:`step`; it names the values it reads
(``inputs``) and the values it returns (``outputs``). A :class:`Pipeline` wires its
steps by those names, and :meth:`Pipeline.run` runs them on Riffle's pipeline
engine: steps whose inputs are ready run in parallel, each step is looked up in
the cache first, and every run, step run, artifact and lineage edge is recorded
in the project's metadata store, where ``riffle ui`` shows them.

>>> import tempfile
>>> from riffle.pipeline import Pipeline, context, step
>>> @step(outputs=["numbers"])
... def load(count):
...     return list(range(count))
>>> @step(inputs=["numbers"], outputs=["total"])
... def total(numbers):
...     return sum(numbers)
>>> project = tempfile.mkdtemp()
>>> p = Pipeline("sums", context=context(count=5), project_dir=project)
>>> result = p.add_step(load).add_step(total).run()
>>> result.outputs["total"], result["numbers"]
(10, [0, 1, 2, 3, 4])
>>> p.run().cached
['load', 'total']
>>> p.run(count=6)["total"]
15

**Inputs and parameters.** A step's inputs are passed to its function by name
when it has a parameter of that name, otherwise in order to its first free
parameters. Its other parameters are filled by name from the pipeline's
:class:`Context` and the keyword arguments of :meth:`Pipeline.run` (which win);
a parameter found in neither keeps its default.

**Artifacts.** Every value a step returns is stored as an artifact, named by the
hash of its bytes: a ``pyarrow.Table`` or a ``pandas.DataFrame`` (when pyarrow is
importable) as Arrow IPC, anything else pickled (protocol 5). :meth:`Pipeline.run`
returns a :class:`RunResult` whose ``outputs`` mapping holds them by output name,
each read back from the store and decoded the first time it is looked up.

**The cache is never wrong.** A step's cache key covers its code version, its
parameters and the content hashes of its inputs. Its code version is a hash of the
source of its function and, followed transitively, of every function and class of
the same module that the function names, and of the values of the module-level
data (constants, tables) it reads. Editing a helper the step calls, or a constant
it reads, re-runs the step; changing one element of a large input array re-runs
the steps that read it. Functions of other modules (libraries) are not followed:
upgrading a library does not invalidate the cache. Within a process, a function's
source is read once per code object: redefining a function, reloading its module or
swapping its ``__code__`` is seen at the next run; editing its file without
reloading is not, and need not be, since the code that runs is still the old one.
What a function reads (defaults, closure cells, module-level values) is hashed anew
on every run. A step with ``cache=False`` runs every time; the steps after it are
still cached by the content of what it returned.

**Failures.** ``retry=N`` runs a failing step up to N more times; ``timeout=S``
fails an attempt that runs longer than S seconds (its thread is left to finish on
its own, its result discarded). When a step fails, :meth:`Pipeline.run` raises
:class:`riffle.RiffleError` naming the step (its ``step_id`` attribute), caused
(``__cause__``) by the exception the function raised, or by a ``TimeoutError``.

Steps run on the engine's threads, not the calling thread. The stores are those of
``project_dir`` (default: the current folder): artifacts in ``.riffle/artifacts/``
and metadata in ``.riffle/metadata.db``, unless ``RIFFLE_ARTIFACTS_URL`` or
``RIFFLE_METADATA_URL`` point elsewhere, as for the ``riffle`` CLI.
"""

import functools
import hashlib
import inspect
import json
import marshal
import math
import os
import pickle
import sys
import types
import weakref
from collections.abc import Mapping

from riffle._riffle import RiffleError
from riffle._riffle import run_pipeline as _run_pipeline

__all__ = ["Context", "Outputs", "Pipeline", "RunResult", "Step", "StepRun", "context", "step"]

# Part of every code version: bump it when the encoding of artifacts changes.
_FORMAT = "riffle-py-pipeline-1"
_PICKLE_PROTOCOL = 5


class Context(Mapping):
    """Named values injected into the steps' functions by parameter name.

    >>> ctx = context(learning_rate=0.1, epochs=3)
    >>> ctx["epochs"], sorted(ctx)
    (3, ['epochs', 'learning_rate'])
    >>> ctx.updated(epochs=5)["epochs"]
    5
    """

    def __init__(self, **params):
        self._params = dict(params)

    def __getitem__(self, name):
        return self._params[name]

    def __iter__(self):
        return iter(self._params)

    def __len__(self):
        return len(self._params)

    def updated(self, **params):
        """A new context with ``params`` added to (or replacing) these values."""
        merged = dict(self._params)
        merged.update(params)
        return Context(**merged)

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"Context({inner})"


def context(**params):
    """A :class:`Context` holding ``params``."""
    return Context(**params)


def _names(value, what):
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    names = list(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"{what} must be names (non-empty strings); got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a value twice: {names!r}")
    return names


class Step:
    """A function made a pipeline step by :func:`step`; calling it calls the function."""

    def __init__(self, func, *, inputs=None, outputs=None, cache=True, retry=0, timeout=None, name=None):
        if not callable(func):
            raise TypeError(f"a step must be a function; got {type(func).__name__}")
        self.func = func
        self.name = name if name is not None else getattr(func, "__name__", None)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"step {func!r} needs a name: pass name=")
        self.inputs = _names(inputs, f"inputs of step {self.name!r}")
        self.outputs = _names(outputs, f"outputs of step {self.name!r}")
        self.cache = bool(cache)
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry of step {self.name!r} must be a count >= 0; got {retry!r}")
        self.retry = retry
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ValueError(f"timeout of step {self.name!r} must be positive seconds; got {timeout!r}")
        self.timeout = timeout
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def __repr__(self):
        return f"<Step {self.name!r} inputs={self.inputs!r} outputs={self.outputs!r}>"


def step(func=None, *, inputs=None, outputs=None, cache=True, retry=0, timeout=None, name=None):
    """Marks a function as a pipeline step: ``@step`` or ``@step(outputs=[...], ...)``.

    ``inputs`` and ``outputs`` name the values it reads and returns (a step with
    several outputs returns a tuple, or a dict by output name); ``cache=False`` runs
    it every time; ``retry`` is how many times a failing attempt is run again;
    ``timeout`` fails an attempt after that many seconds; ``name`` is the step's id
    (default: the function's name; letters, digits, ``_`` and ``-``).
    """
    options = dict(inputs=inputs, outputs=outputs, cache=cache, retry=retry, timeout=timeout, name=name)
    if func is not None:
        return Step(func, **options)
    return lambda f: Step(f, **options)


# ---------------------------------------------------------------------------
# Code versions


def _code_objects(code):
    """``code`` and the code objects nested in it (lambdas, inner functions,
    comprehensions), depth first."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


class _ByIdentity:
    """What was worked out once about an object, kept while the object lives: about
    a code object, which cannot change, or about a part of an object that its user
    checks is still the same (a function's signature).

    Entries are keyed by the object's identity, never by equality (two code objects
    of the same text compare equal), and hold it weakly: when the object is freed,
    its entry goes, so a new object that reuses its address is never taken for it.
    Redefining a function, reloading its module, or swapping a function's
    ``__code__`` (as IPython's autoreload does) brings a new code object, hence a
    new entry. Races between threads only compute an entry twice.
    """

    def __init__(self):
        self._entries = {}

    def get(self, obj, compute, source=None):
        """The entry of ``obj``, made by ``compute(source)`` (``source`` defaults to
        ``obj``) when it has none."""
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        value = compute(obj if source is None else source)
        entries = self._entries

        def forget(_ref, key=key):
            current = entries.get(key)
            if current is not None and current[0] is _ref:
                del entries[key]

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:
            return value  # not weakly referable: not kept
        entries[key] = (ref, value)
        return value


def _code_facts(fn):
    """``(tag, bytes, names)`` of function ``fn``'s code object: its source text (or,
    with no source file, its bytecode), and the global names it and its nested code
    objects read. (The source is looked up through the function, not the code
    object: from a code object alone, ``inspect`` searches every loaded module for
    its file.)"""
    code = fn.__code__
    try:
        tag, data = "source", inspect.getsource(fn).encode("utf-8", "surrogatepass")
    except (OSError, TypeError):
        # No source file (defined in a REPL or exec): the bytecode stands in.
        tag, data = "code", marshal.dumps(code)
    names = []
    seen = set()
    for nested in _code_objects(code):
        for n in nested.co_names:
            if n not in seen:
                seen.add(n)
                names.append(n)
    return tag, data, tuple(names)


def _class_source(cls):
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return cls.__qualname__


# The source of a function is read once per code object and that of a class once
# per class (``inspect.getsource`` tokenizes the file's lines: most of a cached
# run's planning before these were kept). What a function reads at run time
# (defaults, closure cells, module-level values) is looked at on every run.
_CODE_FACTS = _ByIdentity()
_CLASS_SOURCES = _ByIdentity()


class _Digest:
    """Hashes a step function's code and everything of its module it depends on."""

    def __init__(self):
        self._hash = hashlib.sha256(_FORMAT.encode())
        self._seen = set()

    def _add(self, tag, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        self._hash.update(f"{tag}:{len(data)}:".encode())
        self._hash.update(data)

    def hexdigest(self):
        return self._hash.hexdigest()

    def function(self, fn):
        fn = inspect.unwrap(fn)
        if isinstance(fn, Step):
            fn = fn.func
        if not isinstance(fn, types.FunctionType) or fn in self._seen:
            return
        self._seen.add(fn)
        tag, data, names = _CODE_FACTS.get(fn.__code__, _code_facts, fn)
        self._add(tag, data)
        home = fn.__module__
        for i, default in enumerate(fn.__defaults__ or ()):
            self.value(f"default {i}", default, home)
        for key, default in sorted((fn.__kwdefaults__ or {}).items()):
            self.value(f"default {key}", default, home)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:
                continue
            self.value(f"closure {name}", contents, home)
        module_globals = fn.__globals__
        for name in names:
            if name in module_globals:
                self.value(f"global {name}", module_globals[name], home)

    def value(self, label, value, home):
        """What a name a function reads contributes to its version."""
        if isinstance(value, Step):
            value = value.func
        if isinstance(value, (types.ModuleType, types.BuiltinFunctionType)):
            return
        if isinstance(value, (types.FunctionType, functools.partial)) or inspect.isclass(value):
            target = value.func if isinstance(value, functools.partial) else value
            if getattr(inspect.unwrap(target), "__module__", None) != home:
                return  # a library's: not followed
            if isinstance(value, functools.partial):
                self.value(f"{label} args", (value.args, value.keywords), home)
            if inspect.isclass(target):
                self._class(target)
            else:
                self.function(target)
            return
        if callable(value) and not isinstance(value, (list, tuple, dict, set, frozenset)):
            module = getattr(type(value), "__module__", None)
            if module != home:
                return  # an instance of a library's class (a compiled regex, a ufunc)
        try:
            data = pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
        except Exception:
            # A resource (a lock, a connection): its type is all that is stable.
            data = f"unpicklable {type(value).__module__}.{type(value).__qualname__}"
        self._add(label, data)

    def _class(self, cls):
        if cls in self._seen:
            return
        self._seen.add(cls)
        self._add("class", _CLASS_SOURCES.get(cls, _class_source))
        for attr in vars(cls).values():
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            elif isinstance(attr, property):
                for part in (attr.fget, attr.fset, attr.fdel):
                    if part is not None:
                        self.function(part)
                continue
            if isinstance(attr, types.FunctionType):
                self.function(attr)


def code_version(func):
    """The code version of step function ``func``: a hash of its source and of the
    source of the functions and classes of its module that it names (transitively),
    and of the module-level values it reads.

    >>> def twice(x):
    ...     return 2 * x
    >>> code_version(twice) == code_version(twice)
    True
    """
    digest = _Digest()
    digest.function(func)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Artifacts


def _encode(value):
    """``(codec, bytes)`` of a value: Arrow IPC for tables, else a pickle."""
    pa = sys.modules.get("pyarrow")
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        try:
            import pyarrow as pa
        except ImportError:
            pa = None
        if pa is not None:
            return "arrow-pandas", _arrow_bytes(pa, pa.Table.from_pandas(value, preserve_index=True))
    if pa is not None and isinstance(value, pa.Table):
        return "arrow", _arrow_bytes(pa, value)
    return "pickle", pickle.dumps(value, protocol=_PICKLE_PROTOCOL)


def _arrow_bytes(pa, table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _decode(codec, data):
    if codec == "pickle":
        return pickle.loads(data)
    if codec in ("arrow", "arrow-pandas"):
        import pyarrow as pa

        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        return table.to_pandas() if codec == "arrow-pandas" else table
    raise RiffleError(f"an artifact is encoded as {codec!r}, which this version cannot read")


def _pack(parts):
    return pickle.dumps((_FORMAT, tuple(parts)), protocol=_PICKLE_PROTOCOL)


def _unpack(blob):
    fmt, parts = pickle.loads(blob)
    if fmt != _FORMAT:
        raise RiffleError(f"an artifact is in format {fmt!r}; this version reads {_FORMAT!r}")
    return parts


def _outputs_of(s, returned):
    """The encoded parts of what step ``s`` returned, one per output."""
    if len(s.outputs) <= 1:
        return [_encode(returned)]
    if isinstance(returned, Mapping):
        if set(returned) != set(s.outputs):
            raise ValueError(
                f"step {s.name!r} returned a dict with keys {sorted(returned)!r}; "
                f"its outputs are {s.outputs!r}"
            )
        values = [returned[o] for o in s.outputs]
    elif isinstance(returned, (tuple, list)) and len(returned) == len(s.outputs):
        values = list(returned)
    else:
        raise ValueError(
            f"step {s.name!r} has {len(s.outputs)} outputs {s.outputs!r}; it must return "
            f"a tuple of {len(s.outputs)} values or a dict by output name, not {type(returned).__name__}"
        )
    return [_encode(v) for v in values]


# ---------------------------------------------------------------------------
# Parameters


def _is_json(value):
    t = type(value)
    if value is None or t in (bool, str):
        return True
    if t is int:
        return -(2**63) <= value < 2**64
    if t is float:
        return math.isfinite(value)
    if t is list:
        return all(_is_json(v) for v in value)
    if t is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False


def _param_value(value):
    """A parameter as recorded with the step run: itself when it is plain JSON,
    otherwise its type and the hash of its pickle."""
    if _is_json(value):
        return value
    try:
        data = pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
    except Exception as e:
        raise TypeError(f"a parameter of type {type(value).__name__} cannot be pickled: {e}") from e
    return {"type": f"{type(value).__module__}.{type(value).__qualname__}", "sha256": hashlib.sha256(data).hexdigest()}


# ---------------------------------------------------------------------------
# Runs


class StepRun:
    """How one step went in a run: ``status`` (``succeeded``, ``cached``, ``failed``,
    ``skipped``, ``cancelled``), ``cache_hit``, ``attempts``, ``error`` and
    ``output`` (the hash of its artifact)."""

    def __init__(self, name, report):
        self.name = name
        self.status = report["status"]
        self.cache_hit = report["cache_hit"]
        self.attempts = report["attempts"]
        self.error = report["error"]
        self.output = report["output"]

    def __repr__(self):
        return f"<StepRun {self.name!r} {self.status} attempts={self.attempts}>"


class Outputs(Mapping):
    """Every output of a run by name, read from the artifact store the first time it
    is looked up, then kept: a run whose outputs nobody reads reads none of them.

    It is a read-only mapping: ``outputs[name]``, ``name in outputs``, iteration (in
    the order of the steps), ``len``, ``dict(outputs)`` (which reads them all), and
    ``==`` against any mapping. Looking up an output whose artifact has gone from
    the store since the run raises :class:`riffle.RiffleError` naming it. Until
    every output is read, or the mapping is dropped, it holds the run's artifact
    store open (for an S3, GCS or Azure store: its connections and one thread).
    """

    def __init__(self, where, reader):
        # output name -> (step name, artifact hash, index among the step's outputs,
        # the step's number of outputs)
        self._where = where
        self._reader = reader
        self._values = {}
        # artifact hash -> [decoded parts, outputs of it not looked up yet]
        self._parts = {}

    def __getitem__(self, name):
        values = self._values
        if name in values:
            return values[name]
        step_name, artifact, index, count = self._where[name]
        if artifact is None:
            raise RiffleError(f"output {name!r} of step {step_name!r} was not produced by this run")
        held = self._parts.get(artifact)
        if held is None:
            try:
                blob = self._reader.read(artifact, f"output {name!r} of step {step_name!r}")
            except RiffleError as e:
                e.step_id = step_name
                raise
            held = self._parts[artifact] = [_unpack(blob), count]
        codec, data = held[0][index]
        value = _decode(codec, data)
        values[name] = value
        if len(values) == len(self._where):
            self._reader = None  # all read: the store can close
        held[1] -= 1
        if held[1] <= 0:
            # Every output of that artifact is decoded: its bytes are not needed.
            self._parts.pop(artifact, None)
        return value

    def __contains__(self, name):
        return name in self._where

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)

    def __repr__(self):
        return f"<Outputs {list(self._where)!r} ({len(self._values)} read)>"


class RunResult:
    """What :meth:`Pipeline.run` returns: ``outputs`` (every step output by name, an
    :class:`Outputs` mapping that reads each from the store when it is first looked
    up; ``result[name]`` is the same), ``steps`` (a :class:`StepRun` by step name),
    ``run_id``, ``status`` and ``success``."""

    def __init__(self, pipeline, report, outputs):
        self.pipeline = pipeline
        self.run_id = report["run_id"]
        self.status = report["status"]
        self.success = self.status == "succeeded"
        self.outputs = outputs
        self.steps = {name: StepRun(name, r) for name, r in report["steps"].items()}

    def __getitem__(self, name):
        return self.outputs[name]

    @property
    def cached(self):
        """The names of the steps taken from the cache, sorted."""
        return sorted(n for n, s in self.steps.items() if s.cache_hit)

    @property
    def ran(self):
        """The names of the steps that ran, sorted."""
        return sorted(n for n, s in self.steps.items() if s.status == "succeeded")

    def __repr__(self):
        return f"<RunResult {self.pipeline!r} {self.status} run_id={self.run_id}>"


class _Call:
    """What the engine calls for one step: input artifacts in, output artifact out."""

    def __init__(self, s, reads, kwargs_inputs, positional_inputs, injected):
        self.step = s
        self.reads = reads  # input name -> (producer position, output index)
        self.kwargs_inputs = kwargs_inputs  # (parameter, input name)
        self.positional_inputs = positional_inputs  # input names, in argument order
        self.injected = injected  # parameter -> value

    def __call__(self, blobs):
        unpacked = {}

        def read(name):
            position, index = self.reads[name]
            if position not in unpacked:
                unpacked[position] = _unpack(blobs[position])
            codec, data = unpacked[position][index]
            return _decode(codec, data)

        args = [read(n) for n in self.positional_inputs]
        kwargs = {param: read(n) for param, n in self.kwargs_inputs}
        kwargs.update(self.injected)
        returned = self.step.func(*args, **kwargs)
        return _pack(_outputs_of(self.step, returned))


class Pipeline:
    """Steps wired by the names of their inputs and outputs, run by Riffle.

    ``name`` is the pipeline's id in the metadata store (letters, digits, ``_`` and
    ``-``); ``context`` holds the values injected into the steps' functions;
    ``project_dir`` is where the stores are (default: the current folder).
    """

    def __init__(self, name, context=None, project_dir=None, about=""):
        self.name = name
        self.context = context if context is not None else Context()
        if not isinstance(self.context, Mapping):
            raise TypeError(f"the context of pipeline {name!r} must be a Context; got {type(context).__name__}")
        self.project_dir = project_dir
        self.about = about
        self.steps = []

    def add_step(self, s):
        """Adds a step (a :class:`Step`, or a plain function taken as ``@step``);
        returns the pipeline, so calls chain."""
        if not isinstance(s, Step):
            s = Step(s)
        if any(other.name == s.name for other in self.steps):
            raise ValueError(f"pipeline {self.name!r} already has a step named {s.name!r}")
        self.steps.append(s)
        return self

    def _producers(self):
        producers = {}
        for s in self.steps:
            for index, output in enumerate(s.outputs):
                if output in producers:
                    raise ValueError(
                        f"pipeline {self.name!r}: output {output!r} is produced by both "
                        f"step {producers[output][0].name!r} and step {s.name!r}"
                    )
                producers[output] = (s, index)
        return producers

    def _plan(self, values):
        producers = self._producers()
        plans, used = [], set()
        # Steps sharing a function share its code version: nothing runs between
        # planning one step and the next, so what it reads cannot change meanwhile.
        versions = {}
        for s in self.steps:
            upstream, reads = [], {}
            for name in s.inputs:
                if name not in producers:
                    raise ValueError(
                        f"step {s.name!r} reads {name!r}, which no step of pipeline {self.name!r} outputs"
                    )
                producer, index = producers[name]
                if producer.name not in upstream:
                    upstream.append(producer.name)
                reads[name] = (upstream.index(producer.name), index)
            call = _bind(s, reads, values)
            used.update(call.injected)
            params = {k: _param_value(v) for k, v in sorted(call.injected.items())}
            params_text = json.dumps(params, sort_keys=True)
            code = versions.get(id(s.func))
            if code is None:
                code = versions[id(s.func)] = code_version(s.func)
            version = hashlib.sha256(
                json.dumps([code, s.inputs, s.outputs, params_text], sort_keys=True).encode()
            ).hexdigest()
            plans.append(
                (s.name, upstream, f"py-{version[:32]}", params_text, s.cache, s.retry, s.timeout, call)
            )
        return plans, used

    def run(self, **params):
        """Runs the pipeline; ``params`` override the context's values for this run.
        Returns a :class:`RunResult`; raises :class:`riffle.RiffleError` when a step
        fails."""
        values = dict(self.context)
        values.update(params)
        plans, used = self._plan(values)
        unknown = sorted(set(params) - used)
        if unknown:
            raise ValueError(
                f"pipeline {self.name!r}: no step takes parameter(s) {unknown!r}"
            )
        project = os.fspath(self.project_dir) if self.project_dir is not None else os.getcwd()
        report = _run_pipeline(self.name, project, plans, self.about)
        if report["status"] != "succeeded":
            raise _failure(self.name, report)
        where = {}
        for s in self.steps:
            artifact = report["steps"][s.name]["output"]
            for index, output in enumerate(s.outputs):
                where[output] = (s.name, artifact, index, len(s.outputs))
        return RunResult(self.name, report, Outputs(where, report["artifacts"]))

    def __repr__(self):
        return f"<Pipeline {self.name!r} steps={[s.name for s in self.steps]!r}>"


# The signatures of plain functions, by function: each entry holds the code object,
# defaults and keyword defaults it was read from, and is used only while the
# function still has those very objects.
_SIGNATURES = _ByIdentity()


def _signature(func):
    """``inspect.signature(func)``, read once per plain function while its code and
    defaults stay the objects they were (anything else is read every time)."""
    plain = type(func) is types.FunctionType
    if not plain or "__wrapped__" in vars(func) or "__signature__" in vars(func):
        return inspect.signature(func)
    parts = (func.__code__, func.__defaults__, func.__kwdefaults__)
    kept = _SIGNATURES.get(func, lambda f: [parts, inspect.signature(f)])
    if any(a is not b for a, b in zip(kept[0], parts)):
        kept[:] = [parts, inspect.signature(func)]
    return kept[1]


def _bind(s, reads, values):
    """How step ``s``'s function is called: which inputs go by name, which in order,
    and which context values it takes."""
    try:
        signature = _signature(s.func)
    except (TypeError, ValueError):
        return _Call(s, reads, [], list(s.inputs), {})
    params = [
        p
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    names = {p.name for p in params}
    by_name = [(n, n) for n in s.inputs if n in names]
    in_order = [n for n in s.inputs if n not in names]
    free = [
        p
        for p in params
        if p.name not in {n for n, _ in by_name}
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(in_order) > len(free) and not any(
        p.kind == inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()
    ):
        raise TypeError(f"step {s.name!r} reads {len(s.inputs)} inputs; its function takes fewer arguments")
    taken = {n for n, _ in by_name} | {p.name for p in free[: len(in_order)]}
    injected = {}
    for p in params:
        if p.name in taken or p.kind == inspect.Parameter.POSITIONAL_ONLY:
            continue
        if p.name in values:
            injected[p.name] = values[p.name]
        elif p.default is inspect.Parameter.empty:
            raise TypeError(
                f"step {s.name!r}: parameter {p.name!r} is neither an input nor a context value"
            )
    return _Call(s, reads, by_name, in_order, injected)


def _failure(pipeline, report):
    """The :class:`RiffleError` for a run that did not succeed, caused by what the
    failing step raised."""
    failed = [(n, r) for n, r in report["steps"].items() if r["status"] == "failed"]
    if not failed:
        err = RiffleError(f"pipeline {pipeline!r}: the run {report['status']}: {report['error']}")
        err.step_id = None
        return err
    name, r = failed[0]
    error = r["error"] or "failed"
    err = RiffleError(f"step {name!r} of pipeline {pipeline!r} failed: {error}")
    err.step_id = name
    if error.startswith("timed out"):
        err.__cause__ = TimeoutError(f"step {name!r} {error}")
    else:
        err.__cause__ = report["raised"].get(name)
    return err
