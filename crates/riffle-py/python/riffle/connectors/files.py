"""Files as sources and sinks: the engine's file connectors, read and written in
Rust.

:class:`FileSource` reads the lines of one file, :class:`DirSource` one
partition per file of a directory, :class:`CSVSource` the rows of a CSV file as
``dict``\\ s; :class:`FileSink` writes lines to one file, :class:`DirSink` to
several files of a directory, chosen by key. Each source partition remembers
its byte offset, and each sink its length, so a run under recovery resumes after
the last line it snapshotted and the sinks write each line once.

>>> import tempfile, pathlib
>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import run_main
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "in.txt").write_text("to be\\nor not\\n")
>>> flow = Dataflow("files")
>>> lines = op.input("inp", flow, FileSource(tmp / "in.txt"))
>>> op.output("out", op.map("upper", lines, str.upper), FileSink(tmp / "out.txt"))
>>> run_main(flow)
>>> print((tmp / "out.txt").read_text(), end="")
TO BE
OR NOT
"""

import os
from pathlib import Path
from typing import Union

from riffle.inputs import Source
from riffle.outputs import Sink

__all__ = ["CSVSource", "DirSink", "DirSource", "FileSink", "FileSource"]

PathLike = Union[str, "os.PathLike[str]"]


def _batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    return batch_size


class FileSource(Source[str]):
    """The lines of the file at ``path``, without their line endings, read
    ``batch_size`` at a time.

    A missing or unreadable file, or a line that is not UTF-8, stops the run
    with a :class:`riffle.RiffleError` naming the step and the file (and line).
    """

    def __init__(self, path: PathLike, batch_size: int = 100):
        self.path = Path(path)
        self.batch_size = _batch_size(batch_size)
        self._csv = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, batch_size={self.batch_size})"


class DirSource(FileSource):
    """The lines of every file in the directory ``dir_path``: one partition per
    file (sorted by name, not recursive), spread over the workers.

    ``glob_pat`` must be ``"*"``: every regular file is read.
    """

    def __init__(self, dir_path: PathLike, glob_pat: str = "*", batch_size: int = 100):
        if glob_pat != "*":
            raise ValueError(
                f"DirSource reads every file of its directory; glob_pat must be '*', got {glob_pat!r}"
            )
        super().__init__(dir_path, batch_size)
        if not self.path.is_dir():
            raise ValueError(f"DirSource needs a directory; {str(self.path)!r} is not one")


class CSVSource(FileSource):
    """The rows of the CSV file at ``path`` (or of every file of a directory) as
    ``dict``\\ s from the header line's column names to the fields, as ``str``
    (bytewax's ``CSVSource``, which is :class:`csv.DictReader`'s shape).

    Fields are split on ``,``; quoted fields may not span lines.
    """

    def __init__(self, path: PathLike, batch_size: int = 100):
        super().__init__(path, batch_size)
        self._csv = True


class FileSink(Sink[str]):
    """Writes every item as a line of the file at ``file_path`` (created, or
    truncated when a run starts without a recovery store). Items are ``str`` or
    ``(key, str)`` pairs; anything else stops the run with a ``TypeError`` naming
    the step.
    """

    def __init__(self, file_path: PathLike):
        self.file_path = Path(file_path)

    def __repr__(self) -> str:
        return f"FileSink({str(self.file_path)!r})"


class DirSink(Sink[str]):
    """Writes ``(key, str)`` items as lines of ``file_count`` files
    ``part-00000``, ``part-00001``, ... in the directory ``dir_path``; the file
    is chosen by a stable hash of the key, so a key's lines are in one file, in
    order.
    """

    def __init__(self, dir_path: PathLike, file_count: int):
        if not isinstance(file_count, int) or isinstance(file_count, bool) or file_count < 1:
            raise ValueError(f"file_count must be a positive int; got {file_count!r}")
        self.dir_path = Path(dir_path)
        self.file_count = file_count

    def __repr__(self) -> str:
        return f"DirSink({str(self.dir_path)!r}, {self.file_count})"
