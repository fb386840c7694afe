"""Writing outputs atomically: output tar shards written member by member and small files (results, manifest), each
appearing under its final name only when complete.

Local: written to a hidden ``.NAME.JOB.partial`` beside the final name, then renamed (``pipeline.core.files``).
S3: streamed as a multipart upload straight to the final key, which S3 makes visible only when the upload completes.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tarfile
from typing import Any

from pipeline.core.files import AtomicWriter
from pipeline.io.filesystem import get_fs, is_local, join, retry

PARTIAL_SUFFIX = ".partial"


def partial_name(final_name: str, job_id: str) -> str:
    """Hidden temporary name beside the final one; never matches ``*.tar`` or ``*.parquet``."""
    return f".{final_name}.{job_id}{PARTIAL_SUFFIX}"


def remove_stale_partials(dst: str, final_name: str) -> int:
    """Delete temporary files a killed job left for ``final_name`` in ``dst`` (local only: S3 uploads that never
    completed are invisible). Returns how many were removed."""
    fs, path = get_fs(dst)
    if not is_local(fs) or not os.path.isdir(path):
        return 0
    prefix = f".{final_name}."
    removed = 0
    for entry in os.scandir(path):
        if entry.name.startswith(prefix) and entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file():
            os.unlink(entry.path)
            removed += 1
    return removed


class AtomicFile:
    """A file in ``dst`` that appears under its final name only on ``commit()``.

    Local: a ``pipeline.core.files.AtomicWriter`` whose temporary is the hidden ``.NAME.JOB.partial``. S3: streamed as
    a multipart upload straight to the final key, which S3 makes visible only when the upload completes, so a killed
    job never leaves a half object (the incomplete upload is discarded on ``abort`` or by the bucket's lifecycle rule).
    """

    def __init__(self, dst: str, name: str, job_id: str) -> None:
        self.fs, base = get_fs(dst)
        self.final = join(base, name)
        self.local = is_local(self.fs)
        if self.local:
            base, name = posixpath.split(self.final)  # ``name`` may hold a sub-folder
            self.f: Any = AtomicWriter(self.final, partial_name(name, job_id))
        else:
            self.f = retry(lambda: self.fs.open(self.final, "wb", block_size=16 << 20), f"opening {self.final}")
        self.done = False

    def write(self, data: bytes) -> int:
        return self.f.write(data)

    def commit(self) -> None:
        if self.local:
            self.f.commit()
        else:
            self.f.close()  # completes the multipart upload: the object appears now, whole
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        if self.local:
            self.f.abort()
            return
        with contextlib.suppress(OSError):
            if hasattr(self.f, "discard"):
                self.f.discard()  # s3fs: abort the multipart upload
            else:  # pragma: no cover - other fsspec writers
                self.f.close()


def write_bytes_atomic(dst: str, name: str, data: bytes, job_id: str) -> str:
    """Write a small file (results, manifest) atomically; retried on transient errors. Returns its URL."""
    fs, base = get_fs(dst)
    if is_local(fs):
        af = AtomicFile(dst, name, job_id)
        af.write(data)
        af.commit()
        return af.final
    final = join(base, name)
    retry(lambda: fs.pipe_file(final, data), f"writing s3://{final}")
    return f"s3://{final}"


OUTPUT_MTIME = 946684800  # 2000-01-01T00:00:00Z


class _Headers:
    """Members' tar headers as ``tarfile`` writes them in PAX format (``TarInfo.tobuf``), a plain ustar header for
    an ASCII name of at most 100 bytes and a size under 8 GiB made from one ``tobuf`` template: its name, size and
    checksum filled in. ``tobuf`` built the whole block field by field (a fraction of the job's GIL time); any other
    member still goes to it."""

    NAME, SIZE, CHECKSUM = slice(0, 100), slice(124, 136), slice(148, 155)

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self.template = bytearray(self._tobuf("", 0))
        self.template[self.NAME] = bytes(100)
        self.template[self.SIZE] = bytes(12)
        # The checksum counts its own field as eight spaces (tarfile's calc_chksums).
        self.base = sum(self.template) - sum(self.template[148:156]) + 8 * 32

    def _tobuf(self, name: str, size: int) -> bytes:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = size, self.mtime, 0o644
        return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def __call__(self, name: str, size: int) -> bytes:
        if not name.isascii() or len(name) > 100 or size >= 8**11:
            return self._tobuf(name, size)
        field, digits = name.encode("ascii"), b"%011o\0" % size
        header = self.template.copy()
        header[: len(field)] = field
        header[self.SIZE] = digits
        header[self.CHECKSUM] = b"%06o\0" % (self.base + sum(field) + sum(digits))
        return bytes(header)


class TarShardWriter:
    """Writes an output WebDataset shard member by member (nothing held in memory beyond one member), committed
    atomically by ``commit()``.

    The archive is what ``tarfile`` writes in PAX format: each member's header (``_Headers``), its data padded to
    whole blocks, and at the end two zero blocks and zeros to a whole record. The members go straight to the file:
    ``tarfile``'s stream mode copied each member through its record buffer and a copy of its ``TarInfo``, all of it
    holding the GIL the job's other stages wait on (``tests/test_io_shards.py`` checks the bytes against
    ``tarfile``'s)."""

    def __init__(self, dst: str, shard_name: str, job_id: str) -> None:
        remove_stale_partials(dst, f"{shard_name}.tar")
        self.file = AtomicFile(dst, f"{shard_name}.tar", job_id)
        self.names: set[str] = set()
        self.offset = 0
        # A fixed member time: an output shard is a function of its input and the job's configuration only, so the
        # same job gives byte-identical shards on any runner, host or rerun.
        self.mtime = OUTPUT_MTIME
        self._header = _Headers(self.mtime)

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.offset += len(data)

    def add(self, name: str, data: bytes) -> None:
        if name in self.names:  # the job never produces one, but a shard must not silently hold two
            raise ValueError(f"duplicate output member {name!r}")
        self.names.add(name)
        self._write(self._header(name, len(data)))
        self._write(data)
        if len(data) % tarfile.BLOCKSIZE:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))

    def commit(self) -> None:
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))  # the end of the archive
        if self.offset % tarfile.RECORDSIZE:
            self._write(tarfile.NUL * (tarfile.RECORDSIZE - self.offset % tarfile.RECORDSIZE))
        self.file.commit()

    def abort(self) -> None:
        self.file.abort()
