"""Filesystems and retries: a local path or an ``s3://`` URL as an fsspec filesystem, and transient errors retried.

S3 goes through fsspec/s3fs. Endpoint and credentials come from the usual AWS environment variables
(``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``...). Transient errors (connection resets, timeouts, 5xx, throttling) are retried with
exponential backoff: botocore retries each request, and reads resume at the byte where a stream broke.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import posixpath
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

T = TypeVar("T")


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


def read_bytes(url: str) -> bytes:
    fs, path = get_fs(url)
    return retry(lambda: fs.cat_file(path), f"reading {url}")
