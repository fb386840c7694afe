"""Encoders: our fast PNG writer and WebP-lossless round-trip exactly through Pillow; JPEG is close."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.io.encode import encode_jpeg, encode_png, encode_webp, get_encoder


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (37, 64)])
@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_png_round_trips_exactly(shape: tuple[int, int], level: int) -> None:
    rng = np.random.default_rng(level)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, shape, dtype=np.uint8)
    im = Image.open(io.BytesIO(encode_png(rgb, None, level)))
    assert im.mode == "RGB" and (np.asarray(im) == rgb).all()
    im = Image.open(io.BytesIO(encode_png(rgb, alpha, level)))
    assert im.mode == "RGBA" and (np.asarray(im)[..., :3] == rgb).all() and (np.asarray(im)[..., 3] == alpha).all()


def test_png_compresses_photos(photo_factory) -> None:
    img = photo_factory(128, 128)
    assert len(encode_png(img, None, 1)) < img.nbytes * 0.8
    assert len(encode_png(img, None, 0)) > len(encode_png(img, None, 1))  # level 0 stores uncompressed


def test_webp_lossless_and_jpeg(photo_factory) -> None:
    img = photo_factory(40, 48)
    alpha = np.zeros((40, 48), np.uint8)  # fully transparent: colours must still survive (exact mode)
    im = Image.open(io.BytesIO(encode_webp(img, alpha)))
    assert (np.asarray(im)[..., :3] == img).all() and (np.asarray(im)[..., 3] == 0).all()
    back = np.asarray(Image.open(io.BytesIO(encode_jpeg(img, None, 95))))
    assert np.abs(back.astype(int) - img).mean() < 3
    assert get_encoder("jpeg", jpeg_quality=50)(img, None)[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match="unknown format"):
        get_encoder("gif")
    with pytest.raises(ValueError, match="uint8"):
        encode_png(img.astype(np.float32))
