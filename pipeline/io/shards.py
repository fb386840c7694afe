"""Shards in and out, as one import: the public names of the focused modules beside it.

filesystem.py   local paths and s3:// URLs as fsspec filesystems; transient errors retried
listing.py      the shards under a folder or prefix (``ShardRef``, ``list_shards``)
tar_reader.py   a shard's members streamed in order, each checked (``Member``, ``iter_members``)
tar_writer.py   output shards and small files committed atomically (``TarShardWriter``, ``write_bytes_atomic``)
"""

from __future__ import annotations

from pipeline.io.filesystem import get_fs, read_bytes, retry
from pipeline.io.listing import IMAGE_EXTS, ShardRef, list_shards
from pipeline.io.tar_reader import (
    Member,
    check_member_name,
    iter_image_members,
    iter_members,
    split_folder_name,
    split_key,
)
from pipeline.io.tar_writer import TarShardWriter, write_bytes_atomic

__all__ = [
    "IMAGE_EXTS",
    "Member",
    "ShardRef",
    "TarShardWriter",
    "check_member_name",
    "get_fs",
    "iter_image_members",
    "iter_members",
    "list_shards",
    "read_bytes",
    "retry",
    "split_folder_name",
    "split_key",
    "write_bytes_atomic",
]
