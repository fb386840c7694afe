"""Shards in and out: list WebDataset tar shards (local folder or ``s3://bucket/prefix``), stream their members in
order, and write output shards under temporary names that are committed only when complete.

Reading never writes a member name to disk: tar members are read into memory one at a time from a streaming
``tarfile`` (mode ``r|``), so a hostile name (``../x``, ``/etc/x``) can only ever become an error row. A plain folder
of images (no ``*.tar`` in it) is one shard named after the folder.

S3 goes through fsspec/s3fs. Endpoint and credentials come from the usual AWS environment variables
(``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``...). Transient errors (connection resets, timeouts, 5xx, throttling) are retried with
exponential backoff: botocore retries each request, and reads resume at the byte where a stream broke.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import random
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

IMAGE_EXTS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm", "pgm", "pnm"})
# A member larger than this is refused unread (it would have to be held in memory whole).
DEFAULT_MAX_MEMBER_BYTES = 1 << 30
PARTIAL_SUFFIX = ".partial"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------------------
# Filesystems and retries


def s3_storage_options() -> dict[str, Any]:
    """s3fs options from the environment: endpoint (for S3-compatible stores) and botocore's own retry policy."""
    opts: dict[str, Any] = {
        "config_kwargs": {
            "retries": {"max_attempts": 8, "mode": "standard"},
            "connect_timeout": 10,
            "read_timeout": 60,
        },
        # A fresh client per call site: fsspec's instance cache would otherwise pin the first endpoint for the process.
        "skip_instance_cache": True,
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["client_kwargs"] = {"endpoint_url": endpoint}
    return opts


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) for a local path or an ``s3://`` URL. Local paths come back absolute."""
    if url.startswith("s3://"):
        try:
            import s3fs
        except ImportError as exc:  # pragma: no cover - s3fs is a declared dependency of the s3 extra
            raise RuntimeError("s3:// paths need s3fs: pip install 'sris-pipeline[s3]'") from exc
        return s3fs.S3FileSystem(**s3_storage_options()), url[len("s3://") :].rstrip("/")
    return LocalFileSystem(), os.path.abspath(url)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(base: str, name: str) -> str:
    return posixpath.join(base, name) if base else name


_TRANSIENT_WORDS = (
    "slowdown",
    "serviceunavailable",
    "internalerror",
    "requesttimeout",
    "throttl",
    "timed out",
    "timeout",
    "connection",
    "reset by peer",
    "broken pipe",
    "503",
    "500",
    "502",
    "504",
    "temporarily",
    "payload",
    "incomplete read",
    "not enough data",
    "response ended prematurely",
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying (network trouble, throttling, 5xx); False for missing or forbidden paths."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE, errno.ECONNABORTED):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ClientOSError",
    }:
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, OSError | RuntimeError) and any(w in text for w in _TRANSIENT_WORDS)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: delays base, 2*base, 4*base... capped at ``max_delay``."""

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.5 + random.random() / 2)


DEFAULT_RETRY = RetryPolicy()


def retry(
    fn: Callable[[], T],
    what: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient errors; the last error is raised with ``what`` in it."""
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt == policy.attempts - 1:
                if attempt:
                    raise OSError(f"{what}: still failing after {attempt + 1} attempts: {exc}") from exc
                raise
            if on_retry:
                on_retry(exc)
            time.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")


class RetryingReader(io.RawIOBase):
    """A read-only stream over ``fs.open(path)`` that reopens and seeks back to where it was after a transient error,
    so a broken connection in the middle of a multi-GB shard costs a retry, not the shard."""

    def __init__(
        self, fs: fsspec.AbstractFileSystem, path: str, policy: RetryPolicy = DEFAULT_RETRY, block_size: int = 8 << 20
    ) -> None:
        super().__init__()
        self.fs, self.path, self.policy, self.block_size = fs, path, policy, block_size
        self.pos = 0
        self.retries = 0
        self._f = retry(self._open, f"opening {path}", policy)
        self.size: int | None = getattr(self._f, "size", None)
        if self.size is None and is_local(fs):
            self.size = os.fstat(self._f.fileno()).st_size

    def _open(self) -> Any:
        f = (
            self.fs.open(self.path, "rb", block_size=self.block_size)
            if not is_local(self.fs)
            else open(self.path, "rb")  # noqa: SIM115 - a long-lived handle owned by this reader
        )
        if self.pos:
            f.seek(self.pos)
        return f

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        for attempt in range(self.policy.attempts):
            try:
                data = self._f.read(len(view))
                n = len(data)
                if n == 0 and len(view) and self.size is not None and self.pos < self.size:
                    # a stream that ends before the object does lost its connection quietly
                    raise ConnectionError(f"{self.path}: stream ended at byte {self.pos} of {self.size}")
                view[:n] = data
                self.pos += n
                return n
            except Exception as exc:
                if not is_transient(exc) or attempt == self.policy.attempts - 1:
                    raise
                self.retries += 1
                time.sleep(self.policy.delay(attempt))
                with contextlib.suppress(Exception):  # the old stream is broken anyway
                    self._f.close()
                self._f = retry(self._open, f"reopening {self.path}", self.policy)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if not self.closed:
            try:
                self._f.close()
            finally:
                super().close()


# ---------------------------------------------------------------------------------------------------------------------
# Listing shards


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
    images = [e for e in files if _last_ext(posixpath.basename(e["name"])) in IMAGE_EXTS]
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


# ---------------------------------------------------------------------------------------------------------------------
# Streaming members


@dataclass
class Member:
    """One member of a shard, in shard order.

    Attributes:
        shard: shard name. index: position in the shard (0-based). name: the member name as stored.
        key / ext: WebDataset split of the name (``dir/abc.secret.png`` -> ``dir/abc``, ``secret.png``), ext lowercased.
        data: the bytes (None when ``error`` is set).
        error: why the member cannot be used (bad name, duplicate, not a file, too large, unreadable shard).
    """

    shard: str
    index: int
    name: str
    key: str
    ext: str
    data: bytes | None
    error: str | None = None


def _last_ext(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def split_key(name: str) -> tuple[str, str]:
    """WebDataset key and extension: the key runs to the first dot of the last path component."""
    d, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return (posixpath.join(d, stem) if d else stem), (ext.lower() if dot else "")


def check_member_name(name: str) -> str | None:
    """Why a member name is unsafe or unusable, or None when it is fine."""
    if not name or name in (".", "./"):
        return "empty member name"
    if "\0" in name or "\\" in name:
        return f"member name {name!r} contains a NUL or backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"member name {name!r} is an absolute path"
    if ".." in name.split("/"):
        return f"member name {name!r} contains '..'"
    key, _ = split_key(name)
    if not posixpath.basename(key):
        return f"member name {name!r} has an empty key"
    return None


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def iter_members(
    shard: ShardRef,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    policy: RetryPolicy = DEFAULT_RETRY,
    compound_exts: tuple[str, ...] = (),
) -> Iterator[Member]:
    """Stream the members of a shard in order, one in memory at a time. Directories are passed over silently; a
    corrupt or truncated tar yields one final error member (key ``""``) after the members read before the damage.
    Transient read errors are retried; a shard that stays unreadable raises OSError.

    Tar members are split WebDataset-style (key up to the first dot). Files of a folder shard are split at the last
    dot (``IMG_1.v2.jpg`` -> ``IMG_1.v2``, ``jpg``) unless the name ends with one of ``compound_exts``
    (``a.secret.png`` -> ``a``, ``secret.png``), so plain photo folders keep their whole names as keys.
    """
    if shard.kind == "folder":
        yield from _iter_folder(shard, max_member_bytes, policy, compound_exts)
    else:
        yield from _iter_tar(shard, max_member_bytes, policy)


def split_folder_name(fname: str, compound_exts: tuple[str, ...] = ()) -> tuple[str, str]:
    """Key and extension of a file in a folder shard (see ``iter_members``)."""
    lower = fname.lower()
    for ext in sorted(compound_exts, key=len, reverse=True):
        if lower.endswith("." + ext) and len(fname) > len(ext) + 1:
            return fname[: -len(ext) - 1], ext
    return (fname.rsplit(".", 1)[0], _last_ext(fname)) if "." in fname else (fname, "")


def _iter_folder(
    shard: ShardRef, max_member_bytes: int, policy: RetryPolicy, compound_exts: tuple[str, ...]
) -> Iterator[Member]:
    fs, path = get_fs(shard.url)
    # Sorted by key so that a photo and its per-sample secret (a.jpg, a.secret.png) are consecutive members.
    names = sorted(shard.files, key=lambda n: (split_folder_name(n, compound_exts)[0], n))
    for i, fname in enumerate(names):
        key, ext = split_folder_name(fname, compound_exts)
        full = join(path, fname)
        size = retry(lambda full=full: fs.size(full), f"reading {full}", policy)
        if size is not None and size > max_member_bytes:
            yield Member(
                shard.name, i, fname, key, ext, None, f"file is {size} bytes, over the {max_member_bytes} limit"
            )
            continue
        data = retry(lambda full=full: fs.cat_file(full), f"reading {full}", policy)
        yield Member(shard.name, i, fname, key, ext, data)


def _iter_tar(shard: ShardRef, max_member_bytes: int, policy: RetryPolicy) -> Iterator[Member]:
    fs, path = get_fs(shard.url)
    seen: set[str] = set()
    index = 0
    with RetryingReader(fs, path, policy) as raw, io.BufferedReader(raw, 1 << 20) as f:
        try:
            tf = tarfile.open(fileobj=f, mode="r|")  # noqa: SIM115 - closed by the ``with tf`` below
        except tarfile.ReadError as exc:
            yield Member(shard.name, 0, "", "", "", None, f"not a readable tar shard: {exc}")
            return
        with tf:
            while True:
                try:
                    ti = tf.next()
                    if ti is None:
                        # tarfile ends quietly when the data stops at a member boundary; a complete archive has
                        # end-of-archive (zero) blocks after the last member, so their absence means truncation.
                        if shard.size is not None and shard.size < tf.offset + tarfile.BLOCKSIZE:
                            msg = f"shard is truncated: it ends after {index} members without the tar end marker"
                            yield Member(shard.name, index, "", "", "", None, msg)
                        return
                    if ti.isdir():
                        continue
                    member = _read_member(shard.name, index, ti, tf, seen, max_member_bytes)
                except (tarfile.TarError, EOFError) as exc:
                    msg = f"shard is corrupt or truncated after {index} members: {exc}"
                    yield Member(shard.name, index, "", "", "", None, msg)
                    return
                index += 1
                yield member


def _read_member(
    shard: str, index: int, ti: tarfile.TarInfo, tf: tarfile.TarFile, seen: set[str], max_member_bytes: int
) -> Member:
    name = _normalise(ti.name)
    key, ext = split_key(name)
    problem = check_member_name(name)
    if problem is None and not ti.isfile():
        problem = f"member {name!r} is not a regular file (link or device)"
    if problem is None and name in seen:
        problem = f"duplicate member name {name!r} in the shard"
    if problem is None and ti.size > max_member_bytes:
        problem = f"member is {ti.size} bytes, over the {max_member_bytes} limit"
    seen.add(name)
    if problem:
        return Member(shard, index, name, key, ext, None, problem)
    fobj = tf.extractfile(ti)
    data = fobj.read() if fobj is not None else b""
    if len(data) != ti.size:
        raise EOFError(f"member {name!r} is truncated ({len(data)} of {ti.size} bytes)")
    return Member(shard, index, name, key, ext, data)


def iter_image_members(source: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every readable image member of every shard under a folder or s3 prefix, in order."""
    for shard in list_shards(source):
        for m in iter_members(shard):
            if m.error is None and m.data and m.ext.rsplit(".", 1)[-1] in IMAGE_EXTS:
                yield m.name, m.data


# ---------------------------------------------------------------------------------------------------------------------
# Writing


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

    Local: written to a hidden ``.NAME.JOB.partial`` then ``os.replace``d (atomic on one filesystem). S3: streamed as
    a multipart upload straight to the final key, which S3 makes visible only when the upload completes, so a killed
    job never leaves a half object (the incomplete upload is discarded on ``abort`` or by the bucket's lifecycle rule).
    """

    def __init__(self, dst: str, name: str, job_id: str) -> None:
        self.fs, base = get_fs(dst)
        self.final = join(base, name)
        base, name = posixpath.split(self.final)  # ``name`` may hold a sub-folder
        self.local = is_local(self.fs)
        if self.local:
            os.makedirs(base, exist_ok=True)
            self.tmp = join(base, partial_name(name, job_id))
            self.f: Any = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit() or abort()
        else:
            self.tmp = self.final
            self.f = retry(lambda: self.fs.open(self.final, "wb", block_size=16 << 20), f"opening {self.final}")
        self.done = False

    def write(self, data: bytes) -> int:
        return self.f.write(data)

    def commit(self) -> None:
        if self.local:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.final)
        else:
            self.f.close()  # completes the multipart upload: the object appears now, whole
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            if self.local:
                self.f.close()
                os.unlink(self.tmp)
            elif hasattr(self.f, "discard"):
                self.f.discard()  # s3fs: abort the multipart upload
            else:  # pragma: no cover - other fsspec writers
                self.f.close()
        except OSError:
            pass


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


def read_bytes(url: str) -> bytes:
    fs, path = get_fs(url)
    return retry(lambda: fs.cat_file(path), f"reading {url}")


def exists(url: str) -> bool:
    fs, path = get_fs(url)
    return bool(retry(lambda: fs.exists(path), f"checking {url}"))


OUTPUT_MTIME = 946684800  # 2000-01-01T00:00:00Z


class TarShardWriter:
    """Writes an output WebDataset shard member by member (nothing held in memory beyond one member), committed
    atomically by ``commit()``."""

    def __init__(self, dst: str, shard_name: str, job_id: str) -> None:
        remove_stale_partials(dst, f"{shard_name}.tar")
        self.file = AtomicFile(dst, f"{shard_name}.tar", job_id)
        self.tar = tarfile.open(fileobj=self.file, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - see commit()
        self.names: set[str] = set()
        # A fixed member time: an output shard is a function of its input and the job's configuration only, so the
        # same job gives byte-identical shards on any runner, host or rerun.
        self.mtime = OUTPUT_MTIME

    def add(self, name: str, data: bytes) -> None:
        if name in self.names:  # the job never produces one, but a shard must not silently hold two
            raise ValueError(f"duplicate output member {name!r}")
        self.names.add(name)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = len(data), self.mtime, 0o644
        self.tar.addfile(ti, io.BytesIO(data))

    def commit(self) -> None:
        self.tar.close()  # writes the end-of-archive blocks into the file
        self.file.commit()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the stream may already be broken
            self.tar.close()
        self.file.abort()
