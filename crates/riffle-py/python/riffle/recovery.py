"""Recovery: a run snapshots its state into a store, and a later run resumes.

Make a store once (bytewax's shape: ``python -m riffle.recovery DB_DIR
COUNT``, or :func:`init_db_dir`), then pass ``RecoveryConfig(DB_DIR)`` to
:func:`riffle.testing.run_main` or :func:`riffle.run.cli_main`, or ``-r DB_DIR``
to ``python -m riffle.run``. The engine's recovery store (``riffle recovery``
makes and reads the same stores) keeps, at the end of every epoch, each source
partition's position, each sink partition's position and each stateful step's
state per key (Python values are pickled). A run on a store that holds a
committed snapshot resumes from it: sources reopen at their positions and
stateful steps reload their keys; a run that ended is resumed at its end.

>>> import tempfile
>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, TestingSink, run_main
>>> db_dir = tempfile.mkdtemp()
>>> init_db_dir(db_dir, 1)
>>> def total(items, out):
...     flow = Dataflow("total")
...     keyed = op.key_on("key", op.input("inp", flow, TestingSource(items)), lambda _: "all")
...     sums = op.stateful_map("sum", keyed, lambda s, x: ((s or 0) + x, (s or 0) + x))
...     op.output("out", sums, TestingSink(out))
...     run_main(flow, recovery_config=RecoveryConfig(db_dir))
>>> out = []
>>> total([1, 2, 3], out)
>>> out
[('all', 1), ('all', 3), ('all', 6)]
>>> out = []
>>> total([1, 2, 3, 4], out)   # resumes after the third item, with the sum kept
>>> out
[('all', 10)]
"""

import argparse
import os
from datetime import timedelta
from pathlib import Path
from typing import Optional, Union

from riffle import _riffle

__all__ = ["RecoveryConfig", "init_db_dir"]


class RecoveryConfig:
    """Where a run keeps its snapshots: the store ``db_dir``, made by
    :func:`init_db_dir`.

    ``backup_interval`` is accepted for bytewax's signature; the engine keeps
    the snapshots a resume needs and collects the rest itself.
    """

    def __init__(self, db_dir: Union[str, "os.PathLike[str]"], backup_interval: Optional[timedelta] = None):
        self.db_dir = Path(db_dir)
        if backup_interval is not None and not isinstance(backup_interval, timedelta):
            raise TypeError(
                f"backup_interval must be a datetime.timedelta; got a {type(backup_interval).__qualname__}"
            )
        self.backup_interval = backup_interval

    def __repr__(self) -> str:
        return f"RecoveryConfig({str(self.db_dir)!r})"


def init_db_dir(db_dir: Union[str, "os.PathLike[str]"], count: int) -> None:
    """Makes a recovery store of ``count`` partition files in ``db_dir``."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive int; got {count!r}")
    Path(db_dir).mkdir(parents=True, exist_ok=True)
    _riffle.init_recovery(Path(db_dir), count)


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m riffle.recovery", description="Make a recovery store."
    )
    parser.add_argument("db_dir", type=Path, help="the store's directory")
    parser.add_argument("part_count", type=int, help="how many partition files")
    args = parser.parse_args()
    init_db_dir(args.db_dir, args.part_count)


if __name__ == "__main__":
    _main()
