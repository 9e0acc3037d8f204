"""Run a dataflow from the command line, on several workers, or on several
processes.

bytewax's ``python -m bytewax.run`` shape::

    python -m riffle.run MODULE[:FLOW] [-w WORKERS] [-p PROCESSES] [-r DB_DIR] [-s SECONDS]
    python -m riffle.run MODULE[:FLOW] -i PROCESS_ID -a HOST:PORT;HOST:PORT... [-w WORKERS]

``MODULE`` is a module name (``my_app.flows``) or a path to a Python file
(``flows/wordcount.py``); ``FLOW`` is the name of the :class:`Dataflow` in it
(``flow`` by default), or a call of a function that returns one
(``"make_flow('a', 3)"``, with literal arguments). ``-w`` (or
``RIFFLE_WORKERS_PER_PROCESS``) runs it on that many worker threads of the
engine in each process; ``-r`` (``RIFFLE_RECOVERY_DIRECTORY``) snapshots into a
recovery store (:mod:`riffle.recovery`) and resumes from it; ``-s``
(``RIFFLE_SNAPSHOT_INTERVAL``) is the epoch, and snapshot, interval in seconds.

``-p N`` (``RIFFLE_PROCESSES``) starts N processes of this command on this
machine, on free loopback ports, each a member of one cluster, and waits for
them: every process imports the module and builds the same flow, sources'
partitions are spread over the workers of all of them, and keyed steps send
each key to one worker, over TCP when it is in another process. Ctrl-C or
SIGTERM to this command reaches every process. When a process fails the others
are stopped, and the command exits non-zero naming the process and its exit
status (the process itself reports the step that failed). ``-i`` and ``-a``
(``RIFFLE_PROCESS_ID``, ``RIFFLE_ADDRESSES``) run this process as member
``-i`` of a cluster started by hand: ``-a`` lists every member's
``host:port``, in process order, separated by ``;`` (or ``,``), the same in
each member.
Objects of your own classes that travel between processes are pickled, so
they must be importable by the same name in every process (define them in a
module, or in the flow's file).

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
state, windows, files) is the larger part, and several processes are how a
flow's Python functions use several cores; the package makes no other
assumption about the GIL, so a free-threaded CPython runs your functions on
several cores at once. Functions you pass may then be called from several
threads at the same time: keep what they share safe to share.
"""

import argparse
import ast
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable, List, Optional, Union

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
    With ``process_id`` and ``addresses`` (``"host:port"`` of every process, in
    process order) this process is that member of a cluster of processes, as
    :func:`riffle.testing.cluster_main`. Errors as
    :func:`riffle.testing.run_main`.
    """
    if not isinstance(workers_per_process, int) or isinstance(workers_per_process, bool) or workers_per_process < 1:
        raise ValueError(f"workers_per_process must be a positive int; got {workers_per_process!r}")
    if (process_id is None) != (addresses is None):
        raise ValueError("process_id and addresses go together: give both or neither")
    cluster = (process_id, addresses) if addresses is not None else None
    _run(flow, workers_per_process, epoch_interval, recovery_config, cluster)


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
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"riffle.run: {name}={value!r} is not a whole number") from None


def _addresses(text: str) -> List[str]:
    """``host:port`` addresses separated by ``;`` (or ``,``)."""
    return [a.strip() for a in text.replace(",", ";").split(";") if a.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m riffle.run", description="Run a riffle dataflow.")
    parser.add_argument("import_str", help="MODULE_OR_FILE[:FLOW], FLOW a name or a call (default: flow)")
    parser.add_argument(
        "-w", "--workers-per-process", type=int,
        default=_env_int("RIFFLE_WORKERS_PER_PROCESS") or 1,
        help="worker threads per process (env RIFFLE_WORKERS_PER_PROCESS; default 1)",
    )
    parser.add_argument(
        "-p", "--processes", type=int, default=None,
        help="start this many processes on this machine as one cluster (env RIFFLE_PROCESSES; default 1)",
    )
    parser.add_argument(
        "-i", "--process-id", type=int, default=None,
        help="this process's id in a cluster started by hand, with -a (env RIFFLE_PROCESS_ID)",
    )
    parser.add_argument(
        "-a", "--addresses", type=_addresses, default=None,
        help="every process's HOST:PORT, in process order, separated by ';', with -i (env RIFFLE_ADDRESSES)",
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


def _cluster_from(args: argparse.Namespace) -> None:
    """Fills in ``args.processes``, ``args.process_id`` and ``args.addresses``
    from the environment where the command line left them out, and checks them."""
    by_hand = args.process_id is not None or args.addresses is not None
    if args.processes is None and not by_hand:
        args.processes = _env_int("RIFFLE_PROCESSES")
        by_hand = args.processes is None
    if by_hand:
        if args.process_id is None:
            args.process_id = _env_int("RIFFLE_PROCESS_ID")
        if args.addresses is None and os.environ.get("RIFFLE_ADDRESSES"):
            args.addresses = _addresses(os.environ["RIFFLE_ADDRESSES"])
    if args.processes is not None:
        if args.process_id is not None or args.addresses is not None:
            raise SystemExit("riffle.run: -p starts a cluster; -i and -a join one started by hand: give one or the other")
        if args.processes < 1:
            raise SystemExit(f"riffle.run: -p must be at least 1; got {args.processes}")
    elif (args.process_id is None) != (args.addresses is None):
        given, missing = ("-i", "-a") if args.process_id is not None else ("-a", "-i")
        raise SystemExit(f"riffle.run: {given} needs {missing} (or its environment variable) too")
    elif args.addresses is not None and not 0 <= args.process_id < len(args.addresses):
        raise SystemExit(
            f"riffle.run: -i must be from 0 to {len(args.addresses) - 1} "
            f"(one per address in -a); got {args.process_id}"
        )


def _main(argv: Optional[List[str]] = None) -> None:
    args = _parser().parse_args(argv)
    if args.workers_per_process < 1:
        raise SystemExit(f"riffle.run: -w must be at least 1; got {args.workers_per_process}")
    if args.snapshot_interval <= 0:
        raise SystemExit(f"riffle.run: -s must be a positive number of seconds; got {args.snapshot_interval}")
    _cluster_from(args)
    if args.processes is not None and args.processes > 1:
        raise SystemExit(_spawn_cluster(args.import_str, args.processes, _member_args(args)))
    flow = _locate(args.import_str)
    recovery = RecoveryConfig(args.recovery_directory) if args.recovery_directory else None
    cli_main(
        flow,
        workers_per_process=args.workers_per_process,
        process_id=args.process_id,
        addresses=args.addresses,
        epoch_interval=timedelta(seconds=args.snapshot_interval),
        recovery_config=recovery,
    )


def _member_args(args: argparse.Namespace) -> List[str]:
    """The options every process of a spawned cluster runs with, besides -i and -a."""
    member = ["-w", str(args.workers_per_process), "-s", repr(args.snapshot_interval)]
    if args.recovery_directory:
        member += ["-r", str(args.recovery_directory)]
    if args.backup_interval:
        member += ["-b", repr(args.backup_interval)]
    return member


def _free_addresses(count: int) -> List[str]:
    """``count`` loopback addresses whose ports were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _child_setup() -> Optional[Callable[[], None]]:
    """What each spawned process does before it starts: a process group of its
    own (a terminal's Ctrl-C reaches this command, which forwards it once), and,
    on Linux, death with this command, so no process outlives a killed parent."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    if not hasattr(os, "setpgid"):
        return None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG

    return setup


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _spawn_cluster(import_str: str, processes: int, member_args: List[str]) -> Union[int, str]:
    """Runs ``processes`` processes of ``python -m riffle.run import_str`` as one
    cluster on loopback ports and waits for them; returns the exit status for
    :class:`SystemExit` (0, a signal's 128 + number, or a message)."""
    addresses = _free_addresses(processes)
    env = {k: v for k, v in os.environ.items() if k not in ("RIFFLE_PROCESSES", "RIFFLE_PROCESS_ID", "RIFFLE_ADDRESSES")}
    children: List[subprocess.Popen] = []
    received: List[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for child in children:
            if child.poll() is None:
                try:
                    child.send_signal(signum)
                except ProcessLookupError:
                    pass

    # A signal this command was started ignoring (SIGINT under `nohup ... &`)
    # stays ignored, here and in the processes.
    forwarded = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    failure = None
    relays: List[threading.Thread] = []
    relay_lock = threading.Lock()
    try:
        setup = _child_setup()
        for i in range(processes):
            command = [sys.executable, "-m", "riffle.run", import_str, "-i", str(i), "-a", ";".join(addresses)]
            child = subprocess.Popen(command + member_args, env=env, preexec_fn=setup, stderr=subprocess.PIPE)
            children.append(child)
            relay = threading.Thread(target=_relay_lines, args=(child.stderr, relay_lock), daemon=True)
            relay.start()
            relays.append(relay)
        while True:
            codes = [child.poll() for child in children]
            failure = next(((i, c) for i, c in enumerate(codes) if c not in (None, 0)), None)
            if failure is not None or all(c is not None for c in codes):
                break
            time.sleep(0.05)
        if failure is not None:
            _stop(children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # What the processes wrote before they exited (a process of the user's
        # that kept the pipe open is not waited for long).
        for relay in relays:
            relay.join(timeout=2.0)
    if received:
        name = signal.Signals(received[0]).name
        print(f"riffle.run: stopped by {name}; the {processes} processes were told", file=sys.stderr)
        return 128 + int(received[0])
    if failure is not None:
        i, code = failure
        return f"riffle.run: process {i} of {processes} exited with {_exit_status(code)}, so the run failed"
    return 0


def _relay_lines(source, lock: threading.Lock) -> None:
    """Copies a process's standard error to this one's a whole line at a time:
    the processes of a cluster write at once (a failure makes each of them print
    a traceback), and lines written straight to one terminal or file would be cut
    into each other."""
    sink = getattr(sys.stderr, "buffer", None)
    try:
        for line in iter(source.readline, b""):
            with lock:
                if sink is not None:
                    sink.write(line)
                    sink.flush()
                else:
                    sys.stderr.write(line.decode("utf-8", "replace"))
                    sys.stderr.flush()
    finally:
        source.close()


def _stop(children: List[subprocess.Popen]) -> None:
    """After one process failed: the others hear of it through the cluster and
    stop on their own; what is still running after a grace period (a process
    waiting for a peer that never came up) is terminated, then killed."""
    for grace, stop in ((5.0, "terminate"), (2.0, "kill")):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.poll() is None for c in children):
            time.sleep(0.02)
        for child in children:
            if child.poll() is None:
                getattr(child, stop)()
    for child in children:
        child.wait()


if __name__ == "__main__":
    _main()
