"""Reading shards: the members of a tar shard (or the files of a folder shard) streamed in order, one in memory at a
time, each checked before it is used.

Reading never writes a member name to disk: tar members are read into memory one at a time from a streaming
``tarfile`` (mode ``r|``), so a hostile name (``../x``, ``/etc/x``) can only ever become an error row.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.io.filesystem import DEFAULT_RETRY, RetryingReader, RetryPolicy, get_fs, join, retry
from pipeline.io.listing import IMAGE_EXTS, ShardRef, last_ext, list_shards

# A member larger than this is refused unread (it would have to be held in memory whole).
DEFAULT_MAX_MEMBER_BYTES = 1 << 30


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
    return (fname.rsplit(".", 1)[0], last_ext(fname)) if "." in fname else (fname, "")


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
