"""The bytes one protection level carries, and their parsing.

Layout (big-endian), padded with zeros to the level's payload size:

    byte 0      format version (high 4 bits), level index (low 4 bits)
    byte 1      K, the number of secret streams (high 4 bits); 1 in bit 3 when a message follows
    [message]   length L (1 byte), L bytes, CRC-16/CCITT of them (2 bytes)       (the level that carries it)
    K times     codec id (1 byte), length (2 bytes), the stream
    ...         zeros up to the payload size minus 4
    last 4      CRC-32 of everything before it

The CRC-32 is what ``marked`` rests on: a level "decodes" only when the channel decoder's output passes it, so the
chance that an image without the mark (or read with another key) passes is 2^-32 per level and hypothesis tried.
"""

from __future__ import annotations

import binascii
import struct
import zlib
from dataclasses import dataclass

FORMAT_VERSION = 1
CRC_BYTES = 4
HEADER_BYTES = 2
STREAM_HEADER = 3  # codec id + 2-byte length
MESSAGE_OVERHEAD = 3  # length + CRC-16


class PayloadError(ValueError):
    """Bytes that do not fit a level, or a level's bytes that do not parse."""


@dataclass(frozen=True)
class LevelPayload:
    """What one level carries: its index, the secret streams as (codec id, bytes), and the message (or None)."""

    level: int
    streams: tuple[tuple[int, bytes], ...]
    message: bytes | None = None


def stream_budget(payload: int, num_secrets: int, message: int | None) -> int:
    """Bytes left for each of ``num_secrets`` streams in a level of ``payload`` bytes carrying a message of up to
    ``message`` bytes (None: no message field)."""
    fixed = HEADER_BYTES + CRC_BYTES + num_secrets * STREAM_HEADER
    if message is not None:
        fixed += MESSAGE_OVERHEAD + message
    return (payload - fixed) // num_secrets


def pack(p: LevelPayload, size: int) -> bytes:
    """The level's ``size`` bytes (CRC-32 last)."""
    body = bytearray(
        [FORMAT_VERSION << 4 | (p.level & 0x0F), len(p.streams) << 4 | (8 if p.message is not None else 0)]
    )
    if p.message is not None:
        if len(p.message) > 255:
            raise PayloadError(f"a message is at most 255 bytes, got {len(p.message)}")
        body += bytes([len(p.message)]) + p.message + struct.pack(">H", binascii.crc_hqx(p.message, 0xFFFF))
    for codec, data in p.streams:
        body += struct.pack(">BH", codec, len(data)) + data
    if len(body) + CRC_BYTES > size:
        raise PayloadError(f"level {p.level}: {len(body) + CRC_BYTES} bytes do not fit its payload of {size}")
    body += bytes(size - CRC_BYTES - len(body))
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


def crc_ok(data: bytes) -> bool:
    """Whether a level's bytes pass their CRC-32."""
    return len(data) > CRC_BYTES and zlib.crc32(data[:-CRC_BYTES]) == struct.unpack(">I", data[-CRC_BYTES:])[0]


def parse(data: bytes) -> LevelPayload:
    """A level's bytes (CRC already checked) -> what it carries. Raises PayloadError on a malformed body."""
    body = data[:-CRC_BYTES]
    if len(body) < HEADER_BYTES or body[0] >> 4 != FORMAT_VERSION:
        raise PayloadError(f"unknown payload format {body[0] >> 4 if body else None}")
    level, k, has_message = body[0] & 0x0F, body[1] >> 4, bool(body[1] & 8)
    pos, message = HEADER_BYTES, None
    if has_message:
        n = body[pos]
        message = bytes(body[pos + 1 : pos + 1 + n])
        (crc,) = struct.unpack(">H", body[pos + 1 + n : pos + 3 + n])
        if binascii.crc_hqx(message, 0xFFFF) != crc:
            raise PayloadError("the message fails its CRC-16")
        pos += MESSAGE_OVERHEAD + n
    streams = []
    for _ in range(k):
        codec, length = struct.unpack(">BH", body[pos : pos + STREAM_HEADER])
        pos += STREAM_HEADER
        if pos + length > len(body):
            raise PayloadError("a secret stream runs past the payload")
        streams.append((codec, bytes(body[pos : pos + length])))
        pos += length
    return LevelPayload(level, tuple(streams), message)
