"""Decoders: encoded image bytes -> uint8 RGB at native size, EXIF orientation applied, alpha kept aside.

Every decoder first reads the header only (``probe``): the size is checked against a pixel limit (default 100 MP)
before any pixel is decoded, so a decompression bomb costs microseconds, not gigabytes. Then:

- ``cpu`` (the default without DALI): baseline RGB/gray JPEG through simplejpeg (libjpeg-turbo, faster than
  Pillow), 8-bit RGB PNG without EXIF through OpenCV (libpng, a third faster than Pillow at 1 MP, the same pixels),
  every other format and mode through Pillow; images decode in a thread pool (all three release the GIL).
- ``dali``: NVIDIA DALI's image decoder on batches, ``mixed`` (nvJPEG) on a GPU and CPU-only (``device_id=None``)
  otherwise; imported lazily. Images DALI cannot represent faithfully (alpha, 16-bit, palette, CMYK) and any batch it
  rejects go to the CPU path, so one bad file never fails a batch.

Mode conversions: gray, palette, CMYK, YCbCr, LAB... -> RGB; 16-bit -> 8-bit by rounding (x / 257); an alpha channel
(RGBA, LA, palette transparency) is returned separately so the writer can put it back unchanged.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # ISA-L's inflate (a dependency, for the PNG writer's deflate too) and CRC, three and ten times zlib's
    from isal.isal_zlib import crc32 as _crc32
    from isal.isal_zlib import decompress as _inflate
    from isal.isal_zlib import error as _inflate_error
except ImportError:  # pragma: no cover
    from zlib import crc32 as _crc32
    from zlib import decompress as _inflate
    from zlib import error as _inflate_error
from pipeline.io.encode import PNG_SIGNATURE

try:  # the C unfilter, built by the install (setup.py); where it could not be, OpenCV reads every PNG
    from pipeline.io import _png
except ImportError:
    _png = None

DEFAULT_MAX_PIXELS = 100_000_000
EXIF_ORIENTATION = 0x0112

# We enforce our own (configurable) pixel limit from the header before decoding. Pillow's own guard stays in place
# (it protects every other user of Pillow in the process); it is only raised, never lowered, when a decoder is asked
# to accept more than it allows, and its warning between its two thresholds is silenced (ours is the limit).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _allow_pixels(max_pixels: int) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and (not max_pixels or max_pixels > 2 * limit):
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1 if max_pixels else None


class ImageDecodeError(ValueError):
    """An input is not a decodable image, or is refused (too large). The message says which and why."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header says. ``width``/``height`` are after EXIF orientation (as the image will be decoded)."""

    format: str
    mode: str
    width: int
    height: int
    orientation: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class DecodedImage:
    """rgb: (H, W, 3) uint8, C-contiguous. alpha: (H, W) uint8 or None. mode: the source's PIL mode (for the record)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    mode: str


def _open(data: bytes, max_pixels: int) -> Image.Image:
    _allow_pixels(max_pixels)
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image: unrecognised format (first bytes {data[:8]!r})") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image refused before decoding: {exc}") from None
    except Exception as exc:  # Pillow raises many types on a damaged header
        raise ImageDecodeError(f"not an image: unreadable header ({type(exc).__name__}: {exc})") from None


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block must not lose the image: treat as upright
        return 1
    return value if 1 <= value <= 8 else 1


def _png_rgb8_header(data: bytes) -> ImageHeader | None:
    """The header of an 8-bit RGB, non-interlaced PNG read from its IHDR chunk (CRC checked), as Pillow reports it;
    None for any other file, which Pillow reads. The jobs' own outputs and most photo shards are such PNGs, and
    Pillow's ``open`` took 0.1-0.2 ms of the GIL for each, twice an image (the reader's check and the decoder's)."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[8:16] != b"\0\0\0\x0dIHDR":
        return None
    if _crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None  # a damaged header: Pillow says what is wrong
    w, h, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if (depth, color, compression, filtering, interlace) != (8, 2, 0, 0, 0) or not (0 < w < 2**31 and 0 < h < 2**31):
        return None
    # A PNG's eXIf chunk may follow its pixels: orientation is left to the decoder, as for Pillow's PNGs below.
    return ImageHeader("PNG", "RGB", w, h, 1)


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Read the header only; raise ImageDecodeError for empty, unrecognised or over-limit images."""
    header = _png_rgb8_header(data)
    if header is None:
        header = _probe_pillow(data, max_pixels)
    w, h = header.width, header.height
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"invalid image size {w}x{h}")
    if max_pixels and header.pixels > max_pixels:
        raise ImageDecodeError(
            f"image is {w}x{h} = {header.pixels / 1e6:.1f} MP, over the limit of {max_pixels / 1e6:g} MP "
            "(refused before decoding; raise --max-megapixels to accept it)"
        )
    return header


def _probe_pillow(data: bytes, max_pixels: int) -> ImageHeader:
    im = _open(data, max_pixels)
    w, h = im.size
    # A PNG's eXIf chunk may follow its pixels, and Pillow decodes them all to find it: the header check leaves
    # PNG orientation to the decoder (which reads it with the pixels).
    orientation = 1 if im.format == "PNG" else _orientation(im)
    if orientation >= 5:  # transposed orientations swap width and height
        w, h = h, w
    return ImageHeader(im.format or "?", im.mode, w, h, orientation)


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as Pillow's ``exif_transpose`` does."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = a.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = a.swapaxes(0, 1)[::-1]
    return np.ascontiguousarray(a)


def _to_rgb_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any PIL mode -> (H, W, 3) uint8 RGB and optional (H, W) uint8 alpha."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if mode == "F":
            gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        else:  # 16-bit (or 32-bit integer holding 16-bit) gray: rescale to 8 bits
            gray = np.clip(np.rint(a.astype(np.float32) / 257.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), None
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA" or mode in ("RGBa", "La"):
        im = im.convert("RGBA")
    mode = im.mode
    if mode in ("RGBA", "LA"):
        alpha = np.asarray(im.getchannel("A")).copy()
        rgb = im.convert("RGB")
        return np.asarray(rgb).copy(), alpha
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im).copy(), None


def decode_pillow(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode any format Pillow knows, with the conversions above."""
    header = probe(data, max_pixels)
    im = _open(data, max_pixels)
    try:
        im.load()
    except Exception as exc:
        raise ImageDecodeError(f"corrupt or truncated {header.format} image: {exc}") from None
    mode = im.mode
    if (header.orientation if header.format != "PNG" else _orientation(im)) != 1:
        im = ImageOps.exif_transpose(im)
    rgb, alpha = _to_rgb_alpha(im)
    return DecodedImage(rgb, alpha, mode)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, header: ImageHeader | None = None) -> DecodedImage:
    """Decode one image on the CPU: simplejpeg for RGB/gray JPEG, Pillow for everything else."""
    header = header or probe(data, max_pixels)
    if header.format == "JPEG" and header.mode in ("RGB", "L"):
        try:
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except Exception as exc:  # simplejpeg raises ValueError on truncated or corrupt data
            raise ImageDecodeError(f"corrupt or truncated JPEG image: {exc}") from None
        return DecodedImage(apply_orientation(rgb, header.orientation), None, header.mode)
    if header.format == "PNG" and header.mode == "RGB":
        rgb = _decode_png_rgb8(data, header)
        if rgb is not None:
            return DecodedImage(rgb, None, header.mode)
    return decode_pillow(data, max_pixels)


def _decode_png_rgb8(data: bytes, header: ImageHeader) -> np.ndarray | None:
    """An 8-bit RGB PNG (the jobs' own outputs, most photo shards) through ``read_png_rgb8`` or OpenCV, or None
    where Pillow must decode it: an eXIf chunk (orientation) or a transparent colour (tRNS, which Pillow keeps as
    RGB and libpng expands to alpha) anywhere in the file, a 16-bit one, or a stream OpenCV rejects (Pillow then
    says what is wrong)."""
    rgb = read_png_rgb8(data, header.width, header.height)  # it reads no file with either chunk
    if rgb is not None:
        return rgb
    if b"eXIf" in data or b"tRNS" in data:  # a chance match inside the pixels only costs the slower decoder
        return None
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.dtype != np.uint8 or bgr.shape != (header.height, header.width, 3):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_png_rgb8(data: bytes, width: int, height: int) -> np.ndarray | None:
    """The pixels (height, width, 3) uint8 of an 8-bit RGB, non-interlaced PNG of that size, read here: its chunks
    walked with every CRC checked, its stream inflated by ISA-L and its rows unfiltered in C (``_png.c``), both
    outside the GIL: a 256 px crop in about half the time of libpng through OpenCV (``docs/model.md``). None for
    anything else (another layout, a transparent colour or an orientation chunk, an unknown critical chunk, any
    fault in the file) or where the C part is not built: the callers' OpenCV and Pillow paths then decode it, or say
    what is wrong with it."""
    if _png is None or not data.startswith(PNG_SIGNATURE):
        return None
    view, pos, ihdr, idat = memoryview(data), len(PNG_SIGNATURE), b"", []
    while True:
        if pos + 12 > len(data):
            return None  # no IEND
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        end = pos + 12 + size
        if end > len(data) or _crc32(view[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        if kind == b"IHDR":
            ihdr = data[pos + 8 : end - 4]
        elif kind == b"IDAT":
            idat.append(view[pos + 8 : end - 4])
        elif kind == b"IEND":
            break
        elif kind in (b"tRNS", b"eXIf") or (not kind[0] & 0x20 and kind != b"PLTE"):
            return None  # a transparent colour or an orientation (Pillow reads those), an unknown critical chunk
        pos = end
    if len(ihdr) != 13 or struct.unpack(">IIBBBBB", ihdr) != (width, height, 8, 2, 0, 0, 0):
        return None
    try:
        raw = _inflate(b"".join(idat))
        out = np.empty((height, width, 3), np.uint8)
        _png.unfilter(raw, out, height, width, 3)  # checks the stream's length and each row's filter type
    except (ValueError, _inflate_error):
        return None
    return out


class CpuDecoder:
    """simplejpeg + Pillow in a thread pool. ``decode_many`` keeps order and returns an exception in place of each
    image that failed, so the caller can write error rows and go on."""

    name = "cpu"

    def __init__(
        self, workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, pool: ThreadPoolExecutor | None = None
    ) -> None:
        self.max_pixels = max_pixels
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._own_pool = pool is None
        self._pool = pool

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:  # created on first use, so a runner can attach its shared pool instead
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        return self._pool

    def attach_pool(self, pool: ThreadPoolExecutor) -> None:
        """Decode in ``pool`` from now on (a runner sharing one pool between decoding and encoding)."""
        self.close()
        self._pool, self._own_pool = pool, False

    def decode_one(self, data: bytes) -> DecodedImage:
        return decode_image(data, self.max_pixels)

    def decode_many(self, blobs: Sequence[bytes]) -> list[DecodedImage | Exception]:
        futures = [self.pool.submit(self.decode_one, b) for b in blobs]
        out: list[DecodedImage | Exception] = []
        for f in futures:
            try:
                out.append(f.result())
            except Exception as exc:
                out.append(
                    exc if isinstance(exc, ImageDecodeError) else ImageDecodeError(f"{type(exc).__name__}: {exc}")
                )
        return out

    def close(self) -> None:
        if self._own_pool and self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except Exception:  # DALI raises more than ImportError when its native libraries are missing
        return False
    return True


def _cuda_device() -> int | None:
    """0 where torch sees a CUDA GPU, else None. Without an NVIDIA driver on the machine the answer is None without
    importing torch (a second of a CPU-only job's start-up)."""
    import sys

    if "torch" not in sys.modules and not any(
        os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0")
    ):
        return None
    try:
        import torch

        return 0 if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - torch is a dependency
        return None


class DaliDecoder(CpuDecoder):
    """DALI's image decoder on batches: ``mixed`` (nvJPEG) when a GPU is visible, CPU-only otherwise (its ``name``
    then says ``dali-cpu``).

    One DALI pipeline per thread is built lazily for a fixed maximum batch size; each call feeds encoded bytes through
    ``external_source``. Header checks (pixel limit, mode) happen first on the CPU; images with alpha, 16-bit, palette,
    CMYK or an unusual format are decoded by the CPU path, and if DALI rejects a batch, its images are retried one by
    one on the CPU path so the error lands on the bad image alone.
    """

    name = "dali"
    DALI_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")

    def __init__(
        self,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        pool: ThreadPoolExecutor | None = None,
        batch_size: int = 16,
        device_id: int | None = -1,
    ) -> None:
        if not dali_available():
            raise RuntimeError("DALI is not installed: pip install nvidia-dali-cuda130 (or use --decoder cpu)")
        super().__init__(workers, max_pixels, pool)
        self.batch_size = max(1, batch_size)
        self.device_id = _cuda_device() if device_id == -1 else device_id
        # What ran, for the manifest and the benchmark: nvJPEG on a GPU, or DALI's CPU-only mode.
        self.name = "dali" if self.device_id is not None else "dali-cpu"
        self.threads = self.workers
        self._local = threading.local()

    def _pipeline(self):  # -> nvidia.dali.Pipeline
        pipe = getattr(self._local, "pipe", None)
        if pipe is None:
            from nvidia.dali import fn, pipeline_def, types

            device = "mixed" if self.device_id is not None else "cpu"

            @pipeline_def(
                batch_size=self.batch_size,
                num_threads=self.threads,
                device_id=self.device_id,
                prefetch_queue_depth=1,
                exec_dynamic=True,
            )
            def decode_pipe():
                encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, no_copy=False)
                return fn.decoders.image(encoded, device=device, output_type=types.RGB, adjust_orientation=True)

            pipe = decode_pipe()
            pipe.build()
            self._local.pipe = pipe
        return pipe

    def _dali_batch(self, blobs: list[bytes]) -> list[np.ndarray]:
        pipe = self._pipeline()
        out: list[np.ndarray] = []
        for start in range(0, len(blobs), self.batch_size):
            chunk = [np.frombuffer(b, dtype=np.uint8) for b in blobs[start : start + self.batch_size]]
            pipe.feed_input("encoded", chunk)
            (images,) = pipe.run()
            if hasattr(images, "as_cpu"):
                images = images.as_cpu()
            out.extend(np.array(images.at(i), copy=True) for i in range(len(chunk)))
        return out

    def decode_many(self, blobs: Sequence[bytes]) -> list[DecodedImage | Exception]:
        results: list[DecodedImage | Exception | None] = [None] * len(blobs)
        dali_idx: list[int] = []
        cpu_idx: list[int] = []
        for i, b in enumerate(blobs):
            try:
                h = probe(b, self.max_pixels)
            except ImageDecodeError as exc:
                results[i] = exc
                continue
            if h.format in self.DALI_FORMATS and h.mode in ("RGB", "L"):
                dali_idx.append(i)
            else:
                cpu_idx.append(i)
        if dali_idx:
            try:
                for i, rgb in zip(dali_idx, self._dali_batch([blobs[i] for i in dali_idx]), strict=True):
                    results[i] = DecodedImage(np.ascontiguousarray(rgb), None, "RGB")
            except Exception:  # DALI fails a whole batch for one bad file: isolate it on the CPU path
                cpu_idx.extend(dali_idx)
        if cpu_idx:
            for i, r in zip(cpu_idx, super().decode_many([blobs[i] for i in cpu_idx]), strict=True):
                results[i] = r
        return [r if r is not None else ImageDecodeError("not decoded") for r in results]


DECODERS = ("auto", "cpu", "dali")


def make_decoder(
    name: str = "auto",
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    pool: ThreadPoolExecutor | None = None,
    batch_size: int = 16,
) -> CpuDecoder:
    """``auto``: DALI on a GPU when installed, else the CPU decoder (DALI's CPU mode is no faster than simplejpeg in
    a thread pool on small CPUs). ``cpu`` / ``dali`` force one."""
    if name == "auto":
        # The GPU first: importing DALI costs half a second of start-up, which a CPU-only machine need not pay.
        name = "dali" if _cuda_device() is not None and dali_available() else "cpu"
    if name == "cpu":
        return CpuDecoder(workers, max_pixels, pool)
    if name == "dali":
        return DaliDecoder(workers, max_pixels, pool, batch_size)
    raise ValueError(f"unknown decoder {name!r}: choose one of {', '.join(DECODERS)}")
