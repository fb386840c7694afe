"""Atomic writes: a file appears under its final name whole, or not at all.

Everything is written beside the final path under a temporary name, flushed to disk, then renamed over it (atomic
on one filesystem), so a reader, a resumed run or a crash never sees half a checkpoint, table or record. Three
shapes of one mechanism: ``write_atomic`` for bytes in memory, ``atomic_path`` for writers that want a path
(``torch.save``, ``pq.write_table``), ``AtomicWriter`` for a stream written piece by piece and committed later.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FILE_MODE = 0o644  # what a plain ``open`` gives under the usual umask; mkstemp alone would give 0600


class AtomicWriter:
    """A local file that appears at ``path`` only on ``commit()``; ``abort()`` leaves nothing behind.

    ``tmp_name`` names the temporary file beside ``path`` (the batch job uses one that says which job wrote it);
    by default it is a fresh hidden ``.NAME.XXXX.tmp``."""

    def __init__(self, path: str | os.PathLike[str], tmp_name: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tmp_name is None:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            self.tmp = Path(tmp)
            self.file: IO[bytes] = os.fdopen(fd, "wb")
        else:
            self.tmp = self.path.parent / tmp_name
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit() or abort()
        os.fchmod(self.file.fileno(), FILE_MODE)
        self.done = False

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> Path:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        self.done = True
        return self.path

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()
            os.unlink(self.tmp)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    writer = AtomicWriter(path)
    try:
        writer.write(data)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without an error,
    removed when it raises."""
    writer = AtomicWriter(path)
    writer.file.close()  # the caller's library opens the path itself
    try:
        yield writer.tmp
        with open(writer.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(writer.tmp, writer.path)
        writer.done = True
    finally:
        writer.abort()
