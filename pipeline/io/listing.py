"""Listing shards: every WebDataset ``*.tar`` under a folder or ``s3://bucket/prefix`` (or one ``.tar``), or a plain
folder of images as one shard named after the folder, each with a fingerprint that changes with its content."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec

from pipeline.io.filesystem import get_fs, is_local, retry

IMAGE_EXTS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm", "pgm", "pnm"})


@dataclass(frozen=True)
class ShardRef:
    """One unit of work.

    Attributes:
        name: output-facing name without ``.tar`` (``shard-000001``; a folder shard is named after the folder).
        url: the tar's (or folder's) URL, ``s3://...`` or an absolute local path.
        kind: ``tar`` or ``folder``.
        fingerprint: changes when the source changes (tar size and mtime/ETag; a folder's file names and sizes), so
            a shard re-uploaded with new content is redone even if its name did not change.
        files: for a folder shard, its image file names in processing order.
    """

    name: str
    url: str
    kind: str
    fingerprint: str
    files: tuple[str, ...] = ()
    size: int | None = None


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if is_local(fs) else f"s3://{path}"


def _entry_fingerprint(info: dict[str, Any]) -> str:
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
    return f"{info.get('size')}:{str(tag).strip(chr(34))}"


def list_shards(src: str) -> list[ShardRef]:
    """The shards under ``src`` in name order: every ``*.tar`` there, or, if there is none, the folder itself.

    ``src`` may also name a single ``.tar``. Raises FileNotFoundError when ``src`` does not exist or holds neither
    shards nor images; its message starts with ``src`` (the CLI puts the option's name before it).
    """
    fs, path = get_fs(src)
    try:
        info = retry(lambda: fs.info(path), f"listing {src}")
    except FileNotFoundError:
        what = "file" if path.endswith(".tar") else "folder" if is_local(fs) else "prefix"
        raise FileNotFoundError(f"{src}: no such {what}") from None
    if info["type"] != "directory":
        if not path.endswith(".tar"):
            raise FileNotFoundError(f"{src} is a file, neither a folder nor a .tar shard")
        name = posixpath.basename(path)[: -len(".tar")]
        return [ShardRef(name, _url(fs, path), "tar", _entry_fingerprint(info), size=info.get("size"))]
    entries = sorted(retry(lambda: fs.ls(path, detail=True), f"listing {src}"), key=lambda e: e["name"])
    files = [e for e in entries if e["type"] == "file"]
    tars = [e for e in files if e["name"].endswith(".tar")]
    if tars:
        return [
            ShardRef(
                posixpath.basename(e["name"])[: -len(".tar")],
                _url(fs, e["name"]),
                "tar",
                _entry_fingerprint(e),
                size=e.get("size"),
            )
            for e in tars
        ]
    images = [e for e in files if last_ext(posixpath.basename(e["name"])) in IMAGE_EXTS]
    if not images:
        raise FileNotFoundError(f"{src} holds no *.tar shards and no images")
    h = hashlib.sha256()
    for e in images:
        h.update(f"{posixpath.basename(e['name'])}\0{e.get('size')}\n".encode())
    name = posixpath.basename(path.rstrip("/")) or "images"
    return [
        ShardRef(
            name, _url(fs, path), "folder", h.hexdigest()[:32], tuple(posixpath.basename(e["name"]) for e in images)
        )
    ]


def last_ext(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""
