"""Helpers for the I/O and job tests: build real WebDataset shards and images, read outputs back."""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import simplejpeg
from conftest import synthetic_photo
from PIL import Image


def jpeg_bytes(h: int = 48, w: int = 64, seed: int = 0, quality: int = 90) -> bytes:
    return simplejpeg.encode_jpeg(synthetic_photo(h, w, seed), quality=quality)


def png_bytes(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **save)
    return buf.getvalue()


def bomb_png(width: int = 11_000, height: int = 10_000) -> bytes:
    """A real decompression bomb: a valid grayscale PNG of width x height zeros (110 MP) in ~100 KB."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [comp.compress(row * 100) for _ in range(height // 100)]
    parts.append(comp.flush())
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def make_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """Write a tar with exactly these member names (unsafe names included: the point of some tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def photo_shard(path: Path, n: int, seed: int = 0, h: int = 40, w: int = 56) -> Path:
    return make_tar(path, [(f"img{seed}_{i:03d}.jpg", jpeg_bytes(h, w, seed * 1000 + i)) for i in range(n)])


def tar_members(path: Path) -> dict[str, bytes]:
    """All members of a tar (as a dict: duplicates would collapse, so also compare with ``tar_names``)."""
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return [m.name for m in tf.getmembers()]


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def tree(root: Path) -> set[str]:
    """Every path under root (relative), for 'nothing written outside DST' checks."""
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def job_args(command: str, shards: object, out: object, checkpoint: object, size: int, *extra: object) -> list[str]:
    """The arguments every embed / extract test run shares (torch backend: no engine to build), plus ``extra``;
    ``shards=None`` leaves ``--shards`` out (for ``--samples``)."""
    common = ["--out", out, "--checkpoint", checkpoint, "--size", size, "--backend", "torch"]
    return [command, *(["--shards", str(shards)] if shards is not None else []), *map(str, common), *map(str, extra)]
