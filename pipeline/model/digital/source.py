"""Source coding of the digital layer: a secret image <-> a few hundred bytes, by a real image codec.

Each secret is compressed once per job (``encode_secret``): AVIF (AV1 intra, through Pillow) and lossy WebP at a
few resolutions, lossless WebP and PNG for graphics that are smaller that way; every candidate is decoded back and
the one with the highest PSNR against the secret at the network size that fits the byte budget wins. At a few
hundred bytes the AVIF container's own overhead (300-400 bytes) makes lossy WebP the better choice, which is why
both are tried. The reader decodes whichever codec the layer's header names (``decode_secret``).

A nightly job hides the same logo every night: ``encode_secrets`` keeps what it chose in a small file per secret
and budgets (``SecretCache``, under ``$XDG_CACHE_HOME/sris-pipeline``), so a later job reads the streams back instead
of coding again (about a second for a 256 px photo). The file's name is a hash of the secret's pixels, the budgets,
the size, this module's format and the codec libraries' versions: a change to any of them codes afresh.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import io
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Codec ids written in the layer header (one byte each): never renumber, old stegos name them.
CODECS = {"avif": 1, "webp": 2, "webp-lossless": 3, "png": 4, "vp8": 5}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
# Resolutions tried, as fractions of the network size N: below half, a codec at its lowest quality still beats
# coding a quarter-size image for every photo measured; a quarter size serves the smallest (base-layer) budgets.
SCALES = (1.0, 0.75, 0.5, 0.375, 0.25, 0.1875, 0.125, 0.09375, 0.0625)
# AVIF's container alone is 300-400 bytes: under this budget a VP8 frame always wins, so AVIF is not tried.
AVIF_MIN_BUDGET = 400
LOSSY = ("avif", "webp", "vp8")
# A lossy WebP file is a 20-byte RIFF wrapper around one VP8 key frame; at the base level's budget of a few dozen
# bytes those 20 bytes are a third of the stream, so "vp8" stores the frame alone and wraps it again to decode.
RIFF_HEADER = 20
# Lossless candidates are first sized by a fast setting (lossless WebP at method 1, PNG at deflate level 1); the slow
# setting (2 s for a 256 px photo in lossless WebP's method 6) runs only where the fast stream is under this many
# times the budget. The slow settings save 5-10% (WebP) and up to 45% (PNG) on photos and graphics measured, so a
# stream they could fit is never skipped.
LOSSLESS_PROBE = {"webp-lossless": 2.0, "png": 3.0}


class SourceCodingError(ValueError):
    """A secret that no codec fits into the byte budget, or bytes that do not decode."""


@dataclass(frozen=True)
class EncodedSecret:
    """One secret as coded: ``codec`` (a key of ``CODECS``), its bytes, and the PSNR (dB, RGB, 8-bit) of its decoded
    image against the secret at the network size."""

    codec: str
    data: bytes
    psnr: float

    @property
    def codec_id(self) -> int:
        return CODECS[self.codec]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, Image.LANCZOS)


def _riff(frame: bytes) -> bytes:
    """A VP8 key frame -> the lossy WebP file holding it (RIFF, WEBP, one "VP8 " chunk padded to even length)."""
    chunk = b"VP8 " + struct.pack("<I", len(frame)) + frame + (b"\0" if len(frame) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


class _Streams:
    """The streams of one secret at each (side, codec, quality), written once: the levels of a layer, and the VP8
    frames and WebP files (one encode), share them."""

    def __init__(self) -> None:
        self._cache: dict[tuple[tuple[int, int], str, int], bytes] = {}

    def save(self, img: Image.Image, codec: str, quality: int) -> bytes:
        key = (img.size, codec, quality)
        if key not in self._cache:
            self._cache[key] = _save(img, codec, quality, self)
        return self._cache[key]


def _save(img: Image.Image, codec: str, quality: int, streams: _Streams) -> bytes:
    buf = io.BytesIO()
    if codec == "vp8":
        data = streams.save(img, "webp", quality)  # the WebP file of the same quality, written once
        if data[12:16] != b"VP8 ":  # Pillow wrote an extended file: keep it whole (never seen for RGB)
            raise SourceCodingError("libwebp wrote an extended WebP file where a simple one was expected")
        (size,) = struct.unpack("<I", data[16:20])
        return data[RIFF_HEADER : RIFF_HEADER + size]
    if codec == "avif":
        img.save(buf, format="AVIF", quality=quality, speed=4, subsampling="4:2:0")
    elif codec == "webp":
        img.save(buf, format="WEBP", quality=quality, method=6)
    elif codec == "webp-lossless":
        img.save(buf, format="WEBP", lossless=True, quality=100, method=6)
    elif codec == "webp-lossless-fast":
        img.save(buf, format="WEBP", lossless=True, quality=0, method=1)
    elif codec == "png-fast":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def decode_secret(codec: str | int, data: bytes, size: int) -> np.ndarray:
    """The secret (size, size, 3) uint8 from its coded bytes, upsampled to the network size."""
    name = CODEC_NAMES.get(codec, "") if isinstance(codec, int) else codec
    if name not in CODECS:
        raise SourceCodingError(f"unknown codec id {codec!r}")
    if name == "vp8":
        data = _riff(data)
    try:
        img = Image.open(io.BytesIO(data), formats=_opener(name))
        img.load()
    except Exception as exc:  # Pillow raises many types for a corrupt stream
        raise SourceCodingError(f"the {name} stream does not decode: {exc}") from exc
    return np.asarray(_resize(img.convert("RGB"), (size, size)))


# The Pillow format, and its plugin module, of each codec's stream.
_FORMATS = {"avif": "AVIF", "webp": "WEBP", "webp-lossless": "WEBP", "vp8": "WEBP", "png": "PNG"}
_PLUGINS = {"AVIF": "AvifImagePlugin", "WEBP": "WebPImagePlugin", "PNG": "PngImagePlugin"}


def _opener(codec: str) -> list[str] | None:
    """The formats ``Image.open`` is to try for ``codec``'s stream, its plugin imported: opening an AVIF or WebP
    stream without them made Pillow import all of its 40-odd plugins first (50 ms of the first batch's check).
    None (every format) where this Pillow has no such plugin."""
    fmt = _FORMATS[codec]
    try:
        importlib.import_module(f"PIL.{_PLUGINS[fmt]}")
    except ImportError:
        return None
    return [fmt] if fmt in Image.OPEN else None


def _fit_quality(img: Image.Image, codec: str, budget: int, streams: _Streams) -> bytes | None:
    """The highest quality (binary search over 0-100 in steps of 4) whose stream fits ``budget`` bytes, or None
    when even quality 0 does not."""
    best = streams.save(img, codec, 0)
    if len(best) > budget:
        return None
    lo, hi = 1, 25  # quality 4 * q
    while lo <= hi:
        q = (lo + hi) // 2
        data = streams.save(img, codec, 4 * q)
        if len(data) <= budget:
            best, lo = data, q + 1
        else:
            hi = q - 1
    return best


def _lossy(
    secret: Image.Image, size: int, budget: int, codec: str, scales: Iterable[float], ref: np.ndarray, streams: _Streams
):
    """The best stream of one lossy codec over the resolutions, largest first; the PSNR rises then falls as the
    resolution drops, so the walk stops two resolutions past the best."""
    best: EncodedSecret | None = None
    worse = 0
    for scale in scales:
        side = max(8, round(size * scale))
        data = _fit_quality(_resize(secret, (side, side)), codec, budget, streams)
        if data is None:
            continue
        score = _psnr(decode_secret(codec, data, size), ref)
        if best is None or score > best.psnr:
            best, worse = EncodedSecret(codec, data, score), 0
        else:
            worse += 1
            if worse == 2:
                break
    return best


def encode_secret(
    secret: np.ndarray, budget: int, size: int, scales: Iterable[float] = SCALES, streams: _Streams | None = None
) -> EncodedSecret:
    """The best coding of ``secret`` (H, W, 3) uint8 in at most ``budget`` bytes, judged at ``size`` x ``size``.
    ``streams``: the streams already written of this same secret (``encode_secrets`` codes one for several budgets).

    Raises SourceCodingError when nothing fits (a budget below the smallest stream any codec writes)."""
    streams = streams or _Streams()
    if secret.ndim != 3 or secret.shape[2] != 3 or secret.dtype != np.uint8:
        raise SourceCodingError(f"a secret is an (H, W, 3) uint8 array, got {secret.shape} {secret.dtype}")
    img = _resize(Image.fromarray(secret), (size, size))
    ref = np.asarray(img)
    lossy = [c for c in LOSSY if c != "avif" or budget >= AVIF_MIN_BUDGET]
    found = [_lossy(img, size, budget, c, scales, ref, streams) for c in lossy]
    for codec in ("webp-lossless", "png"):  # graphics: flat colours code losslessly in few bytes
        if len(streams.save(img, f"{codec}-fast", 0)) > LOSSLESS_PROBE[codec] * budget:
            continue
        data = streams.save(img, codec, 100)
        if len(data) <= budget:
            found.append(EncodedSecret(codec, data, _psnr(decode_secret(codec, data, size), ref)))
    found = [f for f in found if f is not None]
    if not found:
        raise SourceCodingError(f"no codec fits the secret into {budget} bytes")
    return max(found, key=lambda f: f.psnr)


def encode_secrets(secret: np.ndarray, budgets: Iterable[int], size: int) -> list[EncodedSecret]:
    """``encode_secret`` of one secret at each budget, every stream written once; read from and kept in the
    ``SecretCache`` where one is on (``SRIS_SECRET_CACHE``)."""
    budgets = list(budgets)
    cache = SecretCache.default()
    if cache is not None:
        found = cache.get(secret, budgets, size)
        if found is not None:
            return found
    streams = _Streams()
    coded = [encode_secret(secret, b, size, streams=streams) for b in budgets]
    if cache is not None:
        cache.put(secret, budgets, size, coded)
    return coded


# Part of the cache file's name: bump it when the choice of streams changes (SCALES, the codecs' settings, the search).
CACHE_FORMAT = 1
# The environment variable that places the cache (a folder) or turns it off ("0", "off", "none" or empty).
CACHE_ENV = "SRIS_SECRET_CACHE"


class SecretCache:
    """The streams ``encode_secrets`` chose for a secret, one small JSON file per (secret, budgets, size), in
    ``folder``. A file that is missing, unreadable or from another format is coded afresh; writes are atomic (a
    temporary file renamed), so two jobs coding the same secret at once leave one whole file."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)

    @classmethod
    def default(cls) -> SecretCache | None:
        """The cache ``SRIS_SECRET_CACHE`` names, else ``$XDG_CACHE_HOME/sris-pipeline/secrets`` (``~/.cache``);
        None where it is turned off."""
        env = os.environ.get(CACHE_ENV)
        if env is not None:
            return None if env.strip().lower() in ("", "0", "off", "none") else cls(env)
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return cls(os.path.join(base, "sris-pipeline", "secrets"))

    @staticmethod
    def _versions() -> str:
        from PIL import __version__, features

        return "/".join([__version__] + [str(features.version(c)) for c in ("avif", "webp", "zlib")])

    def path(self, secret: np.ndarray, budgets: list[int], size: int) -> str:
        h = hashlib.sha256(np.ascontiguousarray(secret).tobytes())
        h.update(json.dumps([list(secret.shape), budgets, size, CACHE_FORMAT, self._versions()]).encode())
        return os.path.join(self.folder, h.hexdigest()[:32] + ".json")

    def get(self, secret: np.ndarray, budgets: list[int], size: int) -> list[EncodedSecret] | None:
        try:
            with open(self.path(secret, budgets, size), encoding="utf-8") as f:
                rows = json.load(f)
            coded = [EncodedSecret(r["codec"], base64.b64decode(r["data"]), float(r["psnr"])) for r in rows]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if len(coded) != len(budgets):
            return None
        if any(c.codec not in CODECS or len(c.data) > b for c, b in zip(coded, budgets, strict=True)):
            return None
        return coded

    def put(self, secret: np.ndarray, budgets: list[int], size: int, coded: list[EncodedSecret]) -> None:
        """Keep ``coded``; a cache that cannot be written (read-only home, full disk) is skipped silently: it only
        saves time."""
        path = self.path(secret, budgets, size)
        rows = [{"codec": c.codec, "data": base64.b64encode(c.data).decode(), "psnr": c.psnr} for c in coded]
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(self.folder, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(rows, f)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(tmp)
