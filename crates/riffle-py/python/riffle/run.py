"""Run a dataflow from the command line, or on several workers.

bytewax's ``python -m bytewax.run`` shape::

    python -m riffle.run MODULE[:FLOW] [-w WORKERS] [-r DB_DIR] [-s SECONDS]

``MODULE`` is a module name (``my_app.flows``) or a path to a Python file
(``flows/wordcount.py``); ``FLOW`` is the name of the :class:`Dataflow` in it
(``flow`` by default), or a call of a function that returns one
(``"make_flow('a', 3)"``, with literal arguments). ``-w`` (or
``RIFFLE_WORKERS_PER_PROCESS``) runs it on that many worker threads of the
engine; ``-r`` (``RIFFLE_RECOVERY_DIRECTORY``) snapshots into a recovery store
(:mod:`riffle.recovery`) and resumes from it; ``-s``
(``RIFFLE_SNAPSHOT_INTERVAL``) is the epoch, and snapshot, interval in seconds.

From Python, :func:`cli_main` does the same:

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, TestingSink
>>> flow = Dataflow("squares")
>>> out = []
>>> nums = op.redistribute("spread", op.input("inp", flow, TestingSource(range(6))))
>>> op.output("out", op.map("square", nums, lambda x: x * x), TestingSink(out))
>>> cli_main(flow, workers_per_process=3)
>>> sorted(out)
[0, 1, 4, 9, 16, 25]

Each worker is a thread of the engine. Under CPython's GIL one thread runs
Python at a time, so several workers help where the engine's own work (routing,
state, windows, files) is the larger part; the package makes no other
assumption about the GIL, so a free-threaded CPython runs your functions on
several cores at once. Functions you pass may then be called from several
threads at the same time: keep what they share safe to share.
"""

import argparse
import ast
import importlib
import importlib.util
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import List, Optional

from riffle.dataflow import Dataflow
from riffle.recovery import RecoveryConfig
from riffle.testing import _run

__all__ = ["cli_main"]


def cli_main(
    flow: Dataflow,
    *,
    workers_per_process: int = 1,
    process_id: Optional[int] = None,
    addresses: Optional[List[str]] = None,
    epoch_interval: Optional[timedelta] = None,
    recovery_config: Optional[RecoveryConfig] = None,
) -> None:
    """Runs ``flow`` to its end on ``workers_per_process`` worker threads.

    Partitions of sources and sinks are spread over the workers, keyed steps
    route each key to one worker, and the run ends when every worker is done.
    ``process_id`` and ``addresses`` (several processes) are not built yet and
    must be left out. Errors as :func:`riffle.testing.run_main`.
    """
    if not isinstance(workers_per_process, int) or isinstance(workers_per_process, bool) or workers_per_process < 1:
        raise ValueError(f"workers_per_process must be a positive int; got {workers_per_process!r}")
    if process_id is not None or addresses is not None:
        raise ValueError(
            "several processes (process_id, addresses) are not built yet; "
            "use workers_per_process for several workers in this process"
        )
    _run(flow, workers_per_process, epoch_interval, recovery_config)


def _locate(import_str: str) -> Dataflow:
    """The dataflow ``import_str`` names: ``module_or_file[:name_or_call]``."""
    module_str, _, attr = import_str.partition(":")
    attr = attr or "flow"
    if module_str.endswith(".py") or os.sep in module_str:
        path = Path(module_str).resolve()
        if not path.is_file():
            raise SystemExit(f"riffle.run: no file {module_str!r}")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_str)
        except ModuleNotFoundError as e:
            raise SystemExit(f"riffle.run: cannot import {module_str!r}: {e}") from e
    try:
        expr = ast.parse(attr, mode="eval").body
    except SyntaxError as e:
        raise SystemExit(f"riffle.run: {attr!r} is not a name or a call") from e
    if isinstance(expr, ast.Name):
        name, args, kwargs = expr.id, None, None
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        try:
            args = [ast.literal_eval(a) for a in expr.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords}
        except ValueError as e:
            raise SystemExit(f"riffle.run: the arguments of {attr!r} must be literals") from e
        name = expr.func.id
    else:
        raise SystemExit(f"riffle.run: {attr!r} is not a name or a call")
    if not hasattr(module, name):
        raise SystemExit(f"riffle.run: {module_str!r} has no {name!r}")
    flow = getattr(module, name)
    if args is not None:
        flow = flow(*args, **kwargs)
    if not isinstance(flow, Dataflow):
        raise SystemExit(f"riffle.run: {attr!r} in {module_str!r} is a {type(flow).__qualname__}, not a Dataflow")
    return flow


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    return int(value) if value else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m riffle.run", description="Run a riffle dataflow.")
    parser.add_argument("import_str", help="MODULE_OR_FILE[:FLOW], FLOW a name or a call (default: flow)")
    parser.add_argument(
        "-w", "--workers-per-process", type=int,
        default=_env_int("RIFFLE_WORKERS_PER_PROCESS") or 1,
        help="worker threads (env RIFFLE_WORKERS_PER_PROCESS; default 1)",
    )
    parser.add_argument(
        "-r", "--recovery-directory", type=Path,
        default=os.environ.get("RIFFLE_RECOVERY_DIRECTORY") or None,
        help="recovery store made by `python -m riffle.recovery` (env RIFFLE_RECOVERY_DIRECTORY)",
    )
    parser.add_argument(
        "-s", "--snapshot-interval", type=float,
        default=float(os.environ.get("RIFFLE_SNAPSHOT_INTERVAL") or 10),
        help="seconds per epoch and snapshot (env RIFFLE_SNAPSHOT_INTERVAL; default 10)",
    )
    parser.add_argument(
        "-b", "--backup-interval", type=float,
        default=float(os.environ.get("RIFFLE_BACKUP_INTERVAL") or 0),
        help="accepted for bytewax's command line; not used",
    )
    return parser


def _main(argv: Optional[List[str]] = None) -> None:
    args = _parser().parse_args(argv)
    if args.workers_per_process < 1:
        raise SystemExit(f"riffle.run: -w must be at least 1; got {args.workers_per_process}")
    if args.snapshot_interval <= 0:
        raise SystemExit(f"riffle.run: -s must be a positive number of seconds; got {args.snapshot_interval}")
    flow = _locate(args.import_str)
    recovery = RecoveryConfig(args.recovery_directory) if args.recovery_directory else None
    cli_main(
        flow,
        workers_per_process=args.workers_per_process,
        epoch_interval=timedelta(seconds=args.snapshot_interval),
        recovery_config=recovery,
    )


if __name__ == "__main__":
    _main()
