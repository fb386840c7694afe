"""Encoders: uint8 RGB (+ optional alpha) -> file bytes. PNG (default, lossless), WebP-lossless, JPEG.

PNG is written by a small encoder of our own rather than Pillow's: every row gets the PNG "Up" filter (a vectorised
numpy subtraction) and the stream is deflated by ISA-L (``isal``, SIMD deflate) when installed, else zlib. On photos
with an embedded residual this is ~5x faster than Pillow at compress level 1 for a file of the same size or smaller
(measured in benchmarks), and PNG encoding is the costliest non-network stage of the job. Any PNG reader decodes it;
tests check it round-trips exactly through Pillow.

JPEG is lossy and weakens the hidden secret: it exists for previews and for measuring that loss.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import simplejpeg
from PIL import Image

try:  # ISA-L deflate: several times faster than zlib at the low levels we use; optional.
    from isal import isal_zlib as _fast_zlib
except ImportError:  # pragma: no cover - isal is a dependency, but zlib is a correct fallback
    _fast_zlib = None

FORMATS = ("png", "webp", "jpeg")
EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}
LOSSLESS = ("png", "webp")  # the formats whose outputs keep every pixel (WebP is written lossless here)
DEFAULT_PNG_LEVEL = 1
DEFAULT_JPEG_QUALITY = 95
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = (_fast_zlib or zlib).crc32(payload, zlib.crc32(kind))  # ISA-L's CRC: the IDAT's is the whole stream's
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _deflate(raw: bytes | memoryview, level: int) -> bytes:
    # ISA-L knows levels 0-3; above that, zlib's slower levels compress better and the user asked for size.
    if _fast_zlib is not None and level <= 3:
        return _fast_zlib.compress(raw, level)
    return zlib.compress(raw, level)


def encode_png(
    rgb: np.ndarray, alpha: np.ndarray | None = None, level: int = DEFAULT_PNG_LEVEL, text: dict[str, str] | None = None
) -> bytes:
    """(H, W, 3) uint8 [+ (H, W) alpha] -> 8-bit RGB or RGBA PNG bytes. ``level`` 0 (stored) to 9 (smallest);
    ``text``: tEXt chunks (keyword -> Latin-1 text) written before the image data (``read_png_text`` reads them)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_png expects (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    img = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    h, w, c = img.shape
    rows = img.reshape(h, w * c)
    # Each scanline is prefixed by its filter type; "Up" (2) stores the byte-wise difference from the row above
    # (mod 256), which turns smooth photo content into small numbers that deflate well.
    filtered = np.empty((h, w * c + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    color_type = 2 if c == 3 else 6
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    idat = _deflate(memoryview(filtered).cast("B"), level)
    texts = [_chunk(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1")) for k, v in (text or {}).items()]
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", ihdr), *texts, _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))


def read_png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks that come before the image data of PNG ``data`` (where ``encode_png`` writes them), without
    decoding the image; empty for a PNG without any and for other formats."""
    out: dict[str, str] = {}
    if not data.startswith(PNG_SIGNATURE):
        return out
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tEXt":
            key, _, value = data[pos + 8 : pos + 8 + size].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + size
    return out


def encode_webp(rgb: np.ndarray, alpha: np.ndarray | None = None, level: int = 0) -> bytes:
    """Lossless WebP via Pillow; ``level`` is libwebp's effort (0 fastest .. 6 smallest). ``exact`` keeps the RGB of
    fully transparent pixels (libwebp would otherwise zero them)."""
    img = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    buf = io.BytesIO()
    Image.fromarray(img).save(
        buf, format="WEBP", lossless=True, quality=100 * min(level, 6) // 6, method=min(level, 6), exact=True
    )
    return buf.getvalue()


def encode_jpeg(rgb: np.ndarray, alpha: np.ndarray | None = None, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """JPEG via simplejpeg (libjpeg-turbo), 4:4:4. Alpha cannot be stored in JPEG and is dropped."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB", colorsubsampling="444")


def get_encoder(
    fmt: str,
    png_level: int = DEFAULT_PNG_LEVEL,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    webp_level: int = 0,
    text: dict[str, str] | None = None,
) -> Callable[[np.ndarray, np.ndarray | None], bytes]:
    """A function (rgb, alpha) -> bytes for ``fmt`` in png / webp / jpeg, with its options bound; ``text``: PNG tEXt
    chunks (the other formats carry none)."""
    if fmt == "png":
        return lambda rgb, alpha: encode_png(rgb, alpha, png_level, text)
    if fmt == "webp":
        return lambda rgb, alpha: encode_webp(rgb, alpha, webp_level)
    if fmt == "jpeg":
        return lambda rgb, alpha: encode_jpeg(rgb, alpha, jpeg_quality)
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
