"""The thumbnail code (pipeline/model/codes/thumbnail.py): the analytic two-scale code SRIS-Net's learnable one starts
from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import flat_config

from pipeline.core import distortions as D
from pipeline.model import build_model, get_config
from pipeline.model.codes.layout import BASE_LAYOUTS, DETAIL_COEFFS
from pipeline.model.codes.thumbnail import (
    DETAIL_BOOST,
    PILOT,
    TILE,
    TILE_GAINS,
    CodeLayout,
    ThumbnailReader,
    ThumbnailWriter,
    TileCode,
    dct_basis,
    detail_of,
    pilot,
)
from pipeline.model.legacy import texture_weight
from pipeline.model.migrate import config_from_dict


@pytest.mark.parametrize("n", [4, 8])
def test_dct_basis_is_orthonormal(n: int) -> None:
    basis = torch.stack([dct_basis(u, v, n).flatten() for u in range(n) for v in range(n)])
    assert torch.allclose(basis @ basis.T, torch.eye(n * n), atol=1e-6)


@pytest.mark.parametrize("layout", sorted(BASE_LAYOUTS))
def test_base_and_detail_codes_are_orthogonal_on_every_block(layout: str) -> None:
    for dc in DETAIL_COEFFS:
        detail = dct_basis(*dc, 4)
        for coeff in BASE_LAYOUTS[layout]:
            base = dct_basis(*coeff, 8)
            for i in (0, 4):
                for j in (0, 4):
                    assert abs((base[i : i + 4, j : j + 4] * detail).sum().item()) < 1e-6, (dc, coeff, i, j)


def _covers(photo_factory, n: int = 32) -> torch.Tensor:
    covers = torch.stack([torch.from_numpy(photo_factory(n, n, seed=i)).permute(2, 0, 1) for i in range(2)]) / 255
    return 0.25 + 0.5 * covers  # no clipping at 0 or 1: the tests below measure the code and rounding alone


LAYOUTS = [(1, 1, "low"), (2, 1, "low"), (4, 1, "low"), (2, 2, "low"), (4, 4, "quiet")]


@pytest.mark.parametrize(("k", "d", "base"), LAYOUTS)
def test_codes_read_back_exactly_whatever_the_cover(k: int, d: int, base: str, photo_factory) -> None:
    torch.manual_seed(0)
    covers, secrets = _covers(photo_factory), torch.rand(2, 3 * k, 32, 32)
    layout = CodeLayout.of(k, d, base)
    writer, reader = ThumbnailWriter(3, k, 10.0, layout=layout), ThumbnailReader(3, k, 10.0, layout=layout)
    with torch.no_grad():
        stego = covers + writer(covers, secrets)
        base = reader.base_read(F.pixel_unshuffle(stego, 8)) * reader.base_scale
        assert torch.allclose(base, F.avg_pool2d(secrets, 8) - 0.5 + PILOT * pilot(4, 4, stego), atol=1e-5)
        detail = reader.detail_read(F.pixel_unshuffle(stego, 4)) * reader.detail_scale
        first = secrets[:, : 3 * d]
        expected = detail_of(F.avg_pool2d(first, 4), F.avg_pool2d(first, 8)) + PILOT / DETAIL_BOOST * pilot(8, 8, stego)
        assert torch.allclose(detail, expected, atol=1e-5)
        assert reader(stego).shape == secrets.shape


def test_rounding_to_8_bits_costs_little(photo_factory) -> None:
    torch.manual_seed(0)
    covers, secrets = _covers(photo_factory, 64), torch.rand(2, 3, 64, 64)
    writer, reader = ThumbnailWriter(3, 1, 10.0), ThumbnailReader(3, 1, 10.0)
    with torch.no_grad():
        thumbs = reader.thumbnails(D.quantize(covers + writer(covers, secrets)))
    err = (thumbs - F.avg_pool2d(secrets, 4)).abs()
    assert err.mean() < 0.03


@pytest.mark.parametrize("gain", [0.2, 1.0, 4.0])
def test_pilots_undo_a_gain_and_gate_the_detail(gain: float) -> None:
    """A filter that scales the codes by ``gain`` (here applied to the codes alone) is measured and divided out; at
    a low gain the detail is dropped (base only), at 1 and above it is used."""
    torch.manual_seed(0)
    secrets = torch.rand(1, 3, 256, 256)
    flat = torch.full((1, 3, 256, 256), 0.5)
    writer, reader = ThumbnailWriter(3, 1, 10.0), ThumbnailReader(3, 1, 10.0)
    with torch.no_grad():
        thumbs = reader.thumbnails(flat + gain * writer(flat, secrets))
    base_only = F.interpolate(F.avg_pool2d(secrets, 8), scale_factor=2, mode="bilinear", align_corners=False)
    expected = base_only if gain < 0.35 else F.avg_pool2d(secrets, 4)
    assert (thumbs - expected).abs().mean() < 0.01


def test_sris_net_starts_as_the_thumbnail_code() -> None:
    """Untrained, with the thumbnail code, SRIS-Net already reveals a recognisable secret; without, it does not."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    secrets = torch.stack([torch.stack([yy, xx, (yy + xx) / 2]), torch.stack([xx, 1 - yy, yy * xx])])
    covers = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    psnr = {}
    for coded in (True, False):
        model = build_model(get_config("tiny", thumbnail_code=coded)).eval()
        with torch.inference_mode():
            rec = model.reveal(D.quantize(model.embed(covers, secrets)))
        psnr[coded] = (10 * torch.log10(1 / (rec - secrets).square().mean())).item()
    assert psnr[True] > 20 and psnr[False] < 15


def test_checkpoints_from_before_the_code_load_without_it() -> None:
    old = {k: v for k, v in flat_config("tiny").items() if k != "mirror"}
    del old["thumbnail_code"], old["thumbnail_amplitude"]  # a version-1 dict from before the code (the carrier)
    old["flip_sync"] = True
    assert not config_from_dict(old).codes.thumbnail.enabled
    assert get_config("tiny").multiple == 8 and get_config("tiny", thumbnail_code=False).multiple == 4


def test_legacy_texture_weighting_moves_the_code_out_of_flat_regions() -> None:
    """``legacy.texture_weighting``: the written code grows where the cover is textured and shrinks where it
    is flat, at the same energy; embed still equals the training graph (the folded graph steps aside)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cover = torch.full((1, 3, 64, 64), 0.5)
    cover[..., 32:] += 0.2 * torch.randn(1, 3, 64, 32, generator=g)  # right half textured, left half flat
    cover = D.quantize(cover.clamp(0, 1))
    secrets = torch.rand(1, 3, 64, 64, generator=g)
    energy = {}
    for a in (0.0, 0.8):
        model = build_model(get_config("fast", legacy={"texture_weighting": a})).eval()
        with torch.no_grad():
            code = model.thumbnail.writer(cover, secrets, texture_weight(cover, a))
            energy[a] = (code[..., :32].square().mean().item(), code[..., 32:].square().mean().item())
            assert (model.embed(cover, secrets) - model.embed_raw(cover, secrets).clamp(0, 1)).abs().max() < 1e-5
    flat0, tex0 = energy[0.0]
    flat8, tex8 = energy[0.8]
    assert flat8 < 0.5 * flat0 and tex8 > tex0


def test_texture_weighted_code_is_read_back_through_the_weight_estimated_from_the_stego(photo_factory) -> None:
    """The reader divides the texture weight back out, computed from the 8-bit stego (reveal never sees the cover):
    on photo-like covers it then reads the weighted code about as well as the uniform code, and far better than
    without the division."""
    from pipeline.core.metrics import psnr, to_255

    torch.manual_seed(0)
    covers = _covers(photo_factory, 64)
    secrets = covers.roll(1, dims=0)
    read = {}
    for a in (0.0, 0.8):
        model = build_model(get_config("fast", legacy={"texture_weighting": a})).eval()
        with torch.no_grad():
            stego = D.quantize(model.embed(covers, secrets))
            reader = model.thumbnail.reader
            weight = texture_weight(stego, a)
            read[a, "divided"] = psnr(to_255(reader(stego, weight)), to_255(secrets)).mean().item()
            read[a, "not divided"] = psnr(to_255(reader(stego)), to_255(secrets)).mean().item()
    assert read[0.0, "divided"] == read[0.0, "not divided"]  # a = 0: no weight, nothing to divide
    assert read[0.8, "divided"] > read[0.0, "divided"] - 1.0
    assert read[0.8, "divided"] > read[0.8, "not divided"] + 1.0


@pytest.mark.parametrize("hw", [(4, 8), (6, 9), (3, 5)])
def test_tile_code_inverts_and_leaves_partial_tiles_alone(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    tile, means = TileCode(), torch.rand(2, 6, *hw) - 0.5
    slots = tile(means)
    assert torch.allclose(tile.inverse(slots), means, atol=1e-5)
    h, w = hw[0] - hw[0] % TILE, hw[1] - hw[1] % TILE
    assert torch.equal(slots[..., h:, :], means[..., h:, :]) and torch.equal(slots[..., :, w:], means[..., :, w:])
    if h and w:  # a whole tile: frequency (u, v) of its means, times its gain, in block (u, v)
        dct = torch.stack([dct_basis(u, v, TILE).flatten() for u in range(TILE) for v in range(TILE)])
        coef = dct @ means[0, 0, :TILE, :TILE].flatten() * torch.tensor(TILE_GAINS).flatten()
        assert torch.allclose(slots[0, 0, :TILE, :TILE].flatten(), coef, atol=1e-5)


def test_tile_coded_base_reads_back_exactly_and_spends_less_on_the_mean(photo_factory) -> None:
    """With ``base_tile`` the reader returns the same 8x8 means through the tile code; the code's power moves from the
    tiles' means (gain < 1) to their finer frequencies (gains > 1)."""
    torch.manual_seed(0)
    covers, secrets = _covers(photo_factory, 64), torch.rand(2, 3, 64, 64)
    writer, reader = ThumbnailWriter(3, 1, 10.0, tile=True), ThumbnailReader(3, 1, 10.0, tile=True)
    with torch.no_grad():
        stego = covers + writer(covers, secrets)
        base = reader.base_coefficients(stego) - PILOT * pilot(8, 8, stego)
        assert torch.allclose(reader.tile.inverse(base), F.avg_pool2d(secrets, 8) - 0.5, atol=1e-5)
        thumbs = reader.thumbnails(stego)
    # Through the pilot's gain estimate (a correlation over only 64 blocks here): close, not exact.
    assert (thumbs - F.avg_pool2d(secrets, 4)).abs().mean() < 0.01
    gains = torch.tensor(TILE_GAINS)
    assert gains[0, 0] < 1 < gains.flatten()[1:].min()


@pytest.mark.parametrize("code_last", [False, True])
def test_code_last_keeps_the_learned_residual_out_of_the_code(code_last: bool, photo_factory) -> None:
    """With ``code_last`` the code cancels the learned residual in its coefficients as it cancels the cover's, so a
    learned path that writes there (here: a perturbed head) does not move the code's reading; without, it does."""
    torch.manual_seed(0)
    cfg = get_config("fast", num_secrets=2, detail_secrets=2, mirror="pilot", code_last=code_last)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.embedder.head.weight.normal_(std=0.05)  # a learned residual of several grey levels
        covers, secrets = _covers(photo_factory), torch.rand(2, 6, 32, 32)
        stego = covers + model.embed_residual(covers, secrets, model.score_map(covers))
        reader = model.thumbnail.reader
        base = reader.base_coefficients(stego)
        detail = reader.detail_coefficients(F.pixel_unshuffle(stego, 4))
    expected_base = F.avg_pool2d(secrets, 8) - 0.5 + PILOT * pilot(4, 4, stego)
    expected_detail = detail_of(F.avg_pool2d(secrets, 4), F.avg_pool2d(secrets, 8)) + PILOT / DETAIL_BOOST * pilot(
        8, 8, stego
    )
    errors = [(base - expected_base).abs().max().item(), (detail - expected_detail).abs().max().item()]
    if code_last:
        assert max(errors) < 1e-5
    else:
        assert min(errors) > 1e-2
