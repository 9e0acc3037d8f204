"""Run dataflows in tests: items from memory in, items into a list out.

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, TestingSink, run_main
>>> flow = Dataflow("evens")
>>> nums = op.input("inp", flow, TestingSource(range(6), batch_size=4))
>>> out = []
>>> op.output("out", op.filter("even", nums, lambda x: x % 2 == 0), TestingSink(out))
>>> run_main(flow)
>>> out
[0, 2, 4]

:func:`cluster_main` runs a flow as one process of a cluster of processes
started by hand, each listening at one of ``addresses``; every process runs the
same flow, and its workers exchange items with the others' over TCP. Items
sent to another process are encoded in Rust when they are plain values
(``None``, ``bool``, ``int`` within 64 bits, ``float``, ``str``, ``bytes``,
``list``, ``tuple``, ``dict``, naive or UTC ``datetime``) and pickled
otherwise, so they arrive as the same type; objects of your own classes must be
importable by the same name in every process.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, List, Optional, Sequence

from riffle import _riffle
from riffle.dataflow import Dataflow
from riffle.recovery import RecoveryConfig

__all__ = ["TestingSink", "TestingSource", "cluster_main", "run_main"]


class TestingSource:
    """The items of an iterable, read ``batch_size`` at a time.

    The iterable is read once, when the source is added to a flow by
    :func:`riffle.operators.input`.

    Two markers may stand among the items. ``TestingSource.EOF()`` ends the
    stream there: the items after it are not read, and the final steps emit.
    ``TestingSource.ABORT()`` stops the run there as a crash would: what is still
    in flight is dropped, final steps emit nothing, and ``run_main`` returns
    without raising; each marker does so once, and later runs pass over it.

    >>> flow = Dataflow("eof")
    >>> nums = op.input("inp", flow, TestingSource([1, 2, TestingSource.EOF(), 3]))
    >>> out = []
    >>> op.output("out", nums, TestingSink(out))
    >>> run_main(flow)
    >>> out
    [1, 2]
    """

    __test__ = False  # not a test class, whatever its name

    @dataclass
    class EOF:
        """Ends the stream at this point; write ``TestingSource.EOF()``."""

    @dataclass
    class ABORT:
        """Stops the run at this point, once; write ``TestingSource.ABORT()``."""

        _triggered: bool = False

    def __init__(self, ib: Iterable[Any], batch_size: int = 1):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        self.ib = ib
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"TestingSource({self.ib!r}, batch_size={self.batch_size})"


class TestingSink:
    """Appends every item the flow writes to the list ``ls``, as it is written.

    Items written before a failure stay in the list.
    """

    __test__ = False  # not a test class, whatever its name

    def __init__(self, ls: List[Any]):
        if not isinstance(ls, list):
            raise TypeError(f"TestingSink needs a list; got a {type(ls).__qualname__}")
        self.ls = ls

    def __repr__(self) -> str:
        return f"TestingSink({self.ls!r})"


def run_main(
    flow: Dataflow,
    *,
    epoch_interval: Optional[timedelta] = None,
    recovery_config: Optional[RecoveryConfig] = None,
) -> None:
    """Runs ``flow`` to its end on one worker in this thread.

    ``epoch_interval`` is the wall-clock length of an epoch (10 seconds by
    default). With a ``recovery_config``
    (:class:`riffle.recovery.RecoveryConfig`), the run snapshots its state and
    positions into the recovery store at the end of every epoch, and a run on a
    store that holds a snapshot resumes from it. Raises
    :class:`riffle.RiffleError` when a step fails; when a function of yours
    raised, it is the error's ``__cause__``. Several workers:
    :func:`riffle.run.cli_main`; several processes: :func:`cluster_main`.
    """
    _run(flow, 1, epoch_interval, recovery_config)


def cluster_main(
    flow: Dataflow,
    addresses: Sequence[str],
    proc_id: int,
    *,
    epoch_interval: Optional[timedelta] = None,
    recovery_config: Optional[RecoveryConfig] = None,
    worker_count_per_proc: int = 1,
) -> None:
    """Runs ``flow`` to its end as process ``proc_id`` of a cluster.

    ``addresses`` are the ``"host:port"`` addresses of every process of the
    cluster, in process order, the same list in each; this process listens at
    ``addresses[proc_id]`` and connects to the others, waiting until they are
    up. Each process runs ``worker_count_per_proc`` worker threads; sources'
    partitions are spread over the workers of all processes, and keyed steps
    send each key to one of them. When a step fails in any process, the run
    stops in every process: the one where it failed raises the
    :class:`riffle.RiffleError` naming the step, the others one saying that
    another process failed. Other arguments as :func:`run_main`;
    ``python -m riffle.run -p N`` starts such a cluster on this machine.

    A cluster of one process, on a free port:

    >>> import socket
    >>> with socket.socket() as free:
    ...     free.bind(("127.0.0.1", 0))
    ...     address = "127.0.0.1:%d" % free.getsockname()[1]
    >>> flow = Dataflow("member")
    >>> out = []
    >>> op.output("out", op.input("inp", flow, TestingSource(["a", "b"])), TestingSink(out))
    >>> cluster_main(flow, [address], 0, worker_count_per_proc=2)
    >>> sorted(out)
    ['a', 'b']
    """
    if not isinstance(worker_count_per_proc, int) or isinstance(worker_count_per_proc, bool) or worker_count_per_proc < 1:
        raise ValueError(f"worker_count_per_proc must be a positive int; got {worker_count_per_proc!r}")
    _run(flow, worker_count_per_proc, epoch_interval, recovery_config, (proc_id, addresses))


def _cluster_args(cluster: Any) -> tuple:
    """``(process_id, addresses)`` checked: an index into a list of ``host:port``."""
    proc_id, addresses = cluster
    if isinstance(addresses, str) or not isinstance(addresses, (list, tuple)):
        raise TypeError(f"addresses must be a list of 'host:port' strings; got {addresses!r}")
    if not addresses:
        raise ValueError("addresses must name at least one process; got an empty list")
    for address in addresses:
        host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"every address must be 'host:port'; got {address!r}")
    if not isinstance(proc_id, int) or isinstance(proc_id, bool) or not 0 <= proc_id < len(addresses):
        raise ValueError(
            f"the process id must be an int from 0 to {len(addresses) - 1} "
            f"(one per address); got {proc_id!r}"
        )
    return proc_id, list(addresses)


def _run(
    flow: Dataflow,
    workers: int,
    epoch_interval: Optional[timedelta],
    recovery_config: Optional[RecoveryConfig],
    cluster: Optional[tuple] = None,
) -> None:
    """Checks the arguments and runs ``flow`` on ``workers`` worker threads, as
    one process of a cluster when ``cluster`` is ``(process_id, addresses)``."""
    if not isinstance(flow, Dataflow):
        raise TypeError(f"flow must be a riffle.dataflow.Dataflow; got a {type(flow).__qualname__}")
    proc_id, addresses = _cluster_args(cluster) if cluster is not None else (None, None)
    seconds = None
    if epoch_interval is not None:
        if not isinstance(epoch_interval, timedelta):
            raise TypeError(
                f"epoch_interval must be a datetime.timedelta; got a {type(epoch_interval).__qualname__}"
            )
        seconds = epoch_interval.total_seconds()
    db_dir = None
    if recovery_config is not None:
        if not isinstance(recovery_config, RecoveryConfig):
            raise TypeError(
                "recovery_config must be a riffle.recovery.RecoveryConfig; "
                f"got a {type(recovery_config).__qualname__}"
            )
        db_dir = recovery_config.db_dir
    # Under recovery every epoch ends with a snapshot, as in bytewax.
    snapshot = (seconds if seconds is not None else 10.0) if db_dir is not None else None
    _riffle.run_main(flow, seconds, workers, db_dir, snapshot, proc_id, addresses)
