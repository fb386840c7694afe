"""Decoders: modes, EXIF orientation, pixel limit from the header, clear errors, DALI CPU-only mode."""

from __future__ import annotations

import io
import itertools
import os

import numpy as np
import pytest
import simplejpeg
from jobkit import bomb_png, jpeg_bytes, png_bytes
from PIL import Image, ImageOps

from pipeline.io.decode import (
    CpuDecoder,
    ImageDecodeError,
    apply_orientation,
    dali_available,
    decode_image,
    decode_pillow,
    make_decoder,
    probe,
    read_png_rgb8,
)
from pipeline.io.decode import _png as _png_c


def _jpeg_with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(photo_factory, orientation: int) -> None:
    data = _jpeg_with_orientation(photo_factory(24, 40, seed=orientation), orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    header = probe(data)
    got = decode_image(data)
    assert (header.height, header.width) == expected.shape[:2]
    assert got.rgb.shape == expected.shape and got.rgb.flags.c_contiguous
    # simplejpeg and Pillow both use libjpeg-turbo; allow for a different IDCT/upsampling choice.
    assert np.abs(got.rgb.astype(int) - expected).mean() < 1.5


@pytest.mark.parametrize("orientation", [3, 6])
def test_png_orientation_is_read_with_the_pixels(photo_factory, orientation: int) -> None:
    """A PNG's eXIf chunk is applied by the decoder (the header check leaves it: finding it decodes the pixels)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(photo_factory(24, 40, seed=orientation)).save(buf, format="PNG", exif=exif.tobytes())
    data = buf.getvalue()
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.array_equal(decode_image(data).rgb, expected)
    assert probe(data).pixels == expected.shape[0] * expected.shape[1]


def test_apply_orientation_is_a_permutation(photo_factory) -> None:
    a = photo_factory(5, 7)
    for o in range(1, 9):
        out = apply_orientation(a, o)
        assert sorted(out.reshape(-1, 3).tolist()) == sorted(a.reshape(-1, 3).tolist())


def test_modes_are_converted_and_alpha_kept_aside(photo_factory) -> None:
    rgb = photo_factory(20, 30)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    out = decode_image(png_bytes(gray))
    assert out.rgb.shape == (20, 30, 3) and out.alpha is None and (out.rgb[..., 0] == gray).all()

    alpha = np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1))
    out = decode_image(png_bytes(np.dstack([rgb, alpha])))
    assert out.mode == "RGBA" and (out.rgb == rgb).all() and (out.alpha == alpha).all()

    la = Image.fromarray(np.dstack([gray, alpha]), mode="LA")
    buf = io.BytesIO()
    la.save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert (out.alpha == alpha).all() and (out.rgb[..., 1] == gray).all()

    pal = Image.fromarray(rgb).quantize(16)
    pal.info["transparency"] = 0
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    out = decode_image(buf.getvalue())
    assert out.mode == "P" and out.alpha is not None and out.rgb.shape == (20, 30, 3)
    assert (out.alpha[np.asarray(pal) == 0] == 0).all()

    g16 = (gray.astype(np.uint16) * 257).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="PNG")  # 16-bit grayscale PNG (mode I;16)
    out = decode_image(buf.getvalue())
    assert out.mode.startswith("I") and (out.rgb[..., 2] == gray).all()

    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=95)
    out = decode_image(buf.getvalue())
    assert out.mode == "CMYK" and out.rgb.shape == (20, 30, 3)
    assert np.abs(out.rgb.astype(int) - rgb).mean() < 12  # CMYK round trip through JPEG is approximate


def test_clear_errors() -> None:
    with pytest.raises(ImageDecodeError, match="empty file"):
        decode_image(b"")
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(b'{"caption": "a json member"}')
    data = jpeg_bytes(64, 64)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_pixel_limit_refused_from_header() -> None:
    bomb = bomb_png()  # 110 MP of zeros in ~100 KB
    with pytest.raises(ImageDecodeError, match=r"11000x10000 = 110.0 MP, over the limit of 100 MP"):
        decode_image(bomb)
    small = jpeg_bytes(40, 50)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(small, max_pixels=1999)
    assert decode_image(small, max_pixels=2000).rgb.shape == (40, 50, 3)


def test_cpu_decoder_keeps_order_and_isolates_errors(photo_factory) -> None:
    blobs = [jpeg_bytes(30, 40, seed=i) for i in range(5)]
    blobs[2] = b"garbage"
    dec = CpuDecoder(workers=2)
    try:
        out = dec.decode_many(blobs)
    finally:
        dec.close()
    assert isinstance(out[2], ImageDecodeError)
    for i in (0, 1, 3, 4):
        assert (out[i].rgb == simplejpeg.decode_jpeg(blobs[i])).all()


# CI installs the dali extra (.ci/run), so there DALI's CPU-only mode is always tested; elsewhere it may be absent.
@pytest.mark.skipif(
    not dali_available() and not os.environ.get("CI"), reason="DALI is not installed (pip install -e '.[dali]')"
)
def test_dali_cpu_only_decoding(photo_factory) -> None:
    arr = photo_factory(36, 52, seed=3)
    blobs = [jpeg_bytes(30, 40, seed=i) for i in range(3)]
    blobs.append(_jpeg_with_orientation(arr, 6))  # rotated 90 degrees by EXIF
    blobs.append(b"not an image")
    blobs.append(png_bytes(np.dstack([arr, np.full(arr.shape[:2], 7, np.uint8)])))  # RGBA: goes to the CPU path
    dec = make_decoder("dali", workers=1, batch_size=4)
    try:
        assert dec.name == "dali-cpu" and dec.device_id is None  # no GPU here: CPU-only mode
        out = dec.decode_many(blobs)
    finally:
        dec.close()
    for i in range(3):
        assert np.abs(out[i].rgb.astype(int) - simplejpeg.decode_jpeg(blobs[i])).mean() < 1.5
    assert out[3].rgb.shape == (52, 36, 3)  # orientation applied
    assert np.abs(out[3].rgb.astype(int) - decode_image(blobs[3]).rgb).mean() < 1.5
    assert isinstance(out[4], ImageDecodeError)
    assert (out[5].alpha == 7).all()


def _png(arr: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **params)
    return buf.getvalue()


def test_rgb_png_fast_path_gives_pillows_pixels(photo_factory) -> None:
    """8-bit RGB PNG goes through OpenCV; every variant it might read differently goes to Pillow or reads the same."""
    from pipeline.io.decode import _decode_png_rgb8

    rgb = photo_factory(37, 53, seed=3)
    plain = _png(rgb, compress_level=1)
    assert _decode_png_rgb8(plain, probe(plain)) is not None  # the fast path is taken
    variants = {
        "plain": plain,
        "gamma and sRGB chunks": _png(rgb, gamma=0.45455),
        "ICC profile": _png(rgb, icc_profile=_srgb_profile()),
        "a transparent colour": _png(rgb, transparency=tuple(int(v) for v in rgb[0, 0])),
        "16-bit RGB": _png16(rgb),
    }
    for what, data in variants.items():
        got, ref = decode_image(data), decode_pillow(data)
        assert np.array_equal(got.rgb, ref.rgb), what
        assert (got.alpha is None) == (ref.alpha is None) and got.mode == ref.mode, what
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):  # OpenCV rejects it, Pillow says why
        decode_image(plain[: len(plain) // 2])


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png16(rgb: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", (rgb[..., ::-1].astype(np.uint16) * 257))
    assert ok
    return data.tobytes()


def _filtered_png(rgb: np.ndarray, filters: list[int], idat_parts: int = 1, extra: bytes = b"") -> bytes:
    """An 8-bit RGB PNG whose row r carries filter type ``filters[r % len(filters)]``, written here from the PNG
    specification (section 9) as a reference for the reader, its stream split over ``idat_parts`` IDAT chunks and
    ``extra`` chunks before them."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    x = rgb.reshape(h, w * 3).astype(np.int64)
    raw = bytearray()
    for r in range(h):
        kind = filters[r % len(filters)]
        up = x[r - 1] if r else np.zeros(w * 3, np.int64)
        left = np.concatenate([np.zeros(3, np.int64), x[r, :-3]])
        corner = np.concatenate([np.zeros(3, np.int64), up[:-3]])
        if kind == 4:
            p = left + up - corner
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - corner)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        else:
            pred = [np.zeros_like(up), left, up, (left + up) // 2][kind]
        raw += bytes([kind]) + ((x[r] - pred) % 256).astype(np.uint8).tobytes()
    stream = zlib.compress(bytes(raw), 6)
    cut = np.linspace(0, len(stream), idat_parts + 1).astype(int)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    idats = b"".join(chunk(b"IDAT", stream[a:b]) for a, b in itertools.pairwise(cut))
    return b"\x89PNG\r\n\x1a\n" + ihdr + extra + idats + chunk(b"IEND", b"")


@pytest.mark.skipif(_png_c is None and not os.environ.get("CI"), reason="the C PNG unfilter is not built")
def test_the_c_png_reader_undoes_every_filter_and_leaves_every_other_file_to_opencv_and_pillow(photo_factory):
    """``read_png_rgb8`` (ISA-L inflate, C unfilter) against Pillow on each of the five filter types, mixed, over
    several IDAT chunks; anything it does not read (another layout, a bad CRC, an unknown critical chunk, a short
    stream, an unknown filter) it leaves to the other decoders, which read or reject it as before."""
    import zlib

    rgb = photo_factory(29, 41, seed=5)  # odd sizes: rows of 123 bytes
    for filters in ([0], [1], [2], [3], [4], [4, 1, 0, 3, 2], [2, 4, 3]):
        for parts in (1, 3):
            data = _filtered_png(rgb, filters, parts, extra=_tagged(b"tEXt", b"Comment\0hi"))
            got = read_png_rgb8(data, 41, 29)
            assert got is not None and np.array_equal(got, np.asarray(Image.open(io.BytesIO(data)))), filters
    assert np.array_equal(read_png_rgb8(_png(rgb, compress_level=9), 41, 29), rgb)  # Pillow's adaptive filters
    good = _filtered_png(rgb, [4, 1])
    bad_crc = bytearray(good)
    bad_crc[-20] ^= 1  # a byte of the (last) IDAT's body
    unknown = _filtered_png(rgb, [4], extra=_tagged(b"ABCD", b"critical"))
    raw = zlib.decompress(_idat(good))
    bad_filter = _replace_idat(good, zlib.compress(b"\x07" + raw[1:]))  # filter type 7 on the first row
    short = _replace_idat(good, zlib.compress(zlib.decompress(_idat(good))[:-5]))
    for what, data in {
        "a bad CRC": bytes(bad_crc),
        "a transparent colour": _filtered_png(rgb, [4], extra=_tagged(b"tRNS", bytes(6))),
        "an unknown critical chunk": unknown,
        "an unknown filter type": bad_filter,
        "a short stream": short,
        "a size other than the header's": good,
        "16-bit RGB": _png16(rgb),
        "RGBA": png_bytes(np.dstack([rgb, rgb[..., :1]])),
        "interlaced": _interlaced(good),
        "truncated": good[: len(good) // 2],
    }.items():
        size = (41, 30) if what.startswith("a size") else (41, 29)
        assert read_png_rgb8(data, *size) is None, what
    with pytest.raises(ImageDecodeError):  # what the other decoders say of a bad CRC and an unknown filter
        decode_image(bytes(bad_crc))
    with pytest.raises(ImageDecodeError):
        decode_image(bad_filter)
    assert np.array_equal(decode_image(good).rgb, rgb)


def _tagged(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _idat(data: bytes) -> bytes:
    pos, out = 8, b""
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            out += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    return out


def _replace_idat(data: bytes, stream: bytes) -> bytes:
    """``data`` with its IDAT chunks replaced by one carrying ``stream``."""
    pos, head, tail = 8, b"", b""
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind in (b"IHDR",):
            head += data[pos : pos + 12 + n]
        elif kind == b"IEND":
            tail = data[pos : pos + 12 + n]
        pos += 12 + n
    return data[:8] + head + _tagged(b"IDAT", stream) + tail


def _interlaced(data: bytes) -> bytes:
    """``data`` with its header saying Adam7 interlacing (its stream left as it is)."""
    body = bytearray(data[16:29])
    body[12] = 1
    return data[:8] + _tagged(b"IHDR", bytes(body)) + data[33:]


def test_png_header_read_here_is_pillow_s(photo_factory) -> None:
    """An 8-bit RGB PNG's header comes from its IHDR chunk without Pillow, and says what Pillow says; a damaged
    IHDR, another layout, or the limit behave as through Pillow."""
    from pipeline.io import decode
    from pipeline.io.encode import encode_png

    rgb = np.ascontiguousarray(photo_factory(48, 64))
    data = encode_png(rgb)
    assert decode._png_rgb8_header(data) == decode._probe_pillow(data, 0) == probe(data)
    assert probe(data).format == "PNG" and (probe(data).width, probe(data).height) == (64, 48)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        probe(data, max_pixels=64 * 48 - 1)
    broken = bytearray(data)
    broken[17] ^= 1  # the width's bytes: the IHDR's CRC no longer matches
    assert decode._png_rgb8_header(bytes(broken)) is None
    with pytest.raises(ImageDecodeError, match="not an image"):
        probe(bytes(broken))
    rgba = encode_png(rgb, alpha=np.full(rgb.shape[:2], 200, np.uint8))
    assert decode._png_rgb8_header(rgba) is None and probe(rgba).mode == "RGBA"
