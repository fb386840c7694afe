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


def test_clipping_keeps_the_luma_where_a_channel_has_room() -> None:
    """A luma change pushed past 255 on one channel lands on the others (the layer writes luma); a pixel with no
    room left is clipped; nothing changes where nothing clips."""
    from pipeline.model.digital.modulation import LUMA_WEIGHTS, clip_keeping_luma

    w = torch.tensor(LUMA_WEIGHTS)
    x = torch.tensor([[260.0, 100.0, 50.0], [270.0, 270.0, 270.0], [120.0, 130.0, 140.0], [-6.0, 3.0, 200.0]])
    out = clip_keeping_luma(x, 255.0, dim=-1)
    assert out.min() >= 0 and out.max() <= 255
    assert torch.allclose(out[[0, 3]] @ w, x[[0, 3]] @ w, atol=1e-4)
    assert torch.equal(out[1], torch.full((3,), 255.0)) and torch.equal(out[2], x[2])


def test_rounding_keeps_the_luma_within_its_tolerance() -> None:
    """Each pixel ends on floor or ceil of every channel, with plain rounding where it moves luma by at most the
    tolerance and otherwise the channel choice whose luma is nearest (checked against all eight choices)."""
    import itertools

    from pipeline.model.digital.codewords import LUMA_WEIGHTS
    from pipeline.model.digital.cpu_path import round_keeping_luma

    w = np.array(LUMA_WEIGHTS, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.random((2000, 3)) * 255
    x[:500] = np.floor(x[:500, :1]) + rng.random((500, 1))  # a shared fraction
    got = round_keeping_luma(x).astype(np.float64)
    assert ((got == np.floor(x)) | (got == np.ceil(x))).all()
    error = np.abs((got - x) @ w)
    best = np.stack([np.abs((np.floor(x) + np.array(up) - x) @ w) for up in itertools.product((0, 1), repeat=3)]).min(0)
    plain = np.abs((np.round(x) - x) @ w)
    assert np.array_equal(got[plain <= 0.2], np.round(x)[plain <= 0.2])
    np.testing.assert_allclose(error[plain > 0.2], best[plain > 0.2], atol=1e-9)
    assert error.max() <= 0.2
