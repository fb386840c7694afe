"""The digital layer end to end on real photos: embed, then read after what published images go through."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from digital_kit import as_tensor, as_u8, jpeg, psnr_u8, sample_photos

from pipeline.model.digital import modulation as mod
from pipeline.model.digital.keys import Key
from pipeline.model.digital.layer import DigitalLayer

KEY = Key(bytes(range(32)))


@functools.lru_cache(maxsize=1)
def marked() -> tuple[DigitalLayer, torch.Tensor, torch.Tensor, np.ndarray]:
    """(layer, cover, 8-bit stego, secret): the coffee photo hides the chelsea photo with a message."""
    photos = sample_photos()
    cover, secret = as_tensor(photos[1]), photos[2]
    layer = DigitalLayer(key=KEY)
    prepared = layer.prepare([secret], message_room=32)
    stego = as_u8(layer.embed(cover, cover, prepared, [b"asset-0001"]))
    return layer, cover, stego, secret


def read_one(layer: DigitalLayer, x: torch.Tensor):
    return layer.read(x)[0]


def test_clean_stego_gives_the_most_detailed_level_and_the_message():
    layer, _, stego, secret = marked()
    r = read_one(layer, stego)
    assert r.marked and r.level == "top" and r.message == b"asset-0001"
    assert all(lv.ok for lv in r.levels)
    assert psnr_u8(r.secrets[0], secret) > 25
    assert r.grid.identity and r.filter is None


def test_cover_quality_flat_blocks_untouched_and_chroma_kept():
    layer, cover, stego, _ = marked()
    a, b = (cover * 255).round(), stego * 255
    assert 10 * torch.log10(255**2 / (a - b).pow(2).mean()) > 36
    flat = mod.flat_blocks(mod.luma(a), layer.config.flat_std)
    change = F.pixel_unshuffle((b - a).abs().amax(1, keepdim=True), 8).amax(1)[0]
    assert flat.any() and (change[flat[0]] == 0).all()  # flat blocks: not one grey level moved
    # The change is grey (R = G = B up to rounding, where no channel clipped): the chroma stays the cover's.
    diff, inside = b - a, ((b > 0) & (b < 255)).all(1)
    assert (diff[:, 0] - diff[:, 1])[inside].abs().max() <= 1 and (diff[:, 1] - diff[:, 2])[inside].abs().max() <= 1


def test_jpeg_keeps_a_level_and_the_message():
    layer, _, stego, secret = marked()
    r = read_one(layer, jpeg(stego, 75))
    assert r.marked and r.level in ("main", "top") and r.message == b"asset-0001"
    assert psnr_u8(r.secrets[0], secret) > 20


@pytest.mark.parametrize("shift", [5, 21])
def test_a_shift_of_any_size_is_found(shift):
    layer, _, stego, _ = marked()
    moved = F.pad(stego[..., shift:, shift:], (0, shift, 0, shift), mode="replicate")
    r = read_one(layer, moved)
    assert r.marked and (r.grid.dy, r.grid.dx) == (shift, shift) and r.message == b"asset-0001"


def test_a_mirror_and_a_resampled_crop_are_found():
    layer, _, stego, _ = marked()
    r = read_one(layer, stego.flip(-1))
    assert r.marked and r.grid.mirrored
    crop = stego[..., 10:240, 20:250]  # 90% of each side, then the reader resamples it to 256
    r = read_one(layer, crop)
    assert r.marked and r.message == b"asset-0001" and r.grid.side == 230 and (r.grid.dy, r.grid.dx) == (10, 20)


def test_a_blur_is_undone_before_reading():
    layer, _, stego, _ = marked()
    k = torch.full((3, 1, 3, 3), 1 / 9)
    blurred = as_u8(F.conv2d(F.pad(stego, (1, 1, 1, 1), mode="reflect"), k, groups=3))
    r = read_one(layer, blurred)
    assert r.marked and r.filter is not None and r.filter[0] > 0.3


def test_wrong_key_and_unmarked_image_read_nothing():
    layer, cover, stego, _ = marked()
    other = DigitalLayer(layer.config, Key(bytes(range(1, 33))))
    r = read_one(other, stego)
    assert not r.marked and r.secrets is None and r.message is None and r.score < 6
    r = read_one(layer, as_u8(cover))
    assert not r.marked and r.secrets is None and r.score < 6
