"""The residual code (``pipeline/model/codes/residual.py``): what it writes reads back, it stays out of the other
codes' way, and it shuts itself off where an attack destroyed it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import flat_config

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr
from pipeline.model import build_model, get_config
from pipeline.model.codes import residual
from pipeline.model.codes.mirror import template
from pipeline.model.codes.thumbnail import CodeLayout, dct_basis


def _photos(photo_factory, n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    imgs = [photo_factory(size, size, seed=seed + i) for i in range(n)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


# (K, detail secrets, base layout) -> D: the first detail coefficient takes 4 dimensions (one per 4x4 block), the
# others up to 4 of what is left, each base coefficient 1.
LAYOUTS = {(1, 1, "low"): 11, (2, 1, "low"): 10, (4, 1, "low"): 8, (2, 2, "low"): 6, (4, 1, "quiet"): 8}


@pytest.mark.parametrize("k", [1, 2, 4])
def test_the_code_patterns_are_orthonormal_checkerboards(k: int) -> None:
    basis = residual._maps_of(k)["basis"]
    # The detail code takes 4 dimensions, the bases k.
    assert basis.shape == (residual.dims(k), 64) and residual.dims(k) == 16 - 4 - k
    assert np.allclose(basis @ basis.T, np.eye(residual.dims(k)), atol=1e-9)
    images = torch.from_numpy(basis.reshape(-1, 1, 8, 8))
    # All of each pattern's energy is in the 2x2 blocks' checkerboard coefficients.
    assert torch.allclose(residual.coefficients(images).square().sum(dim=(1, 2, 3)), torch.ones(len(images)).double())


@pytest.mark.parametrize("k", [1, 4])
def test_strip_removes_the_free_subspace_and_nothing_else(k: int) -> None:
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    stripped, u = residual.strip(x, k)
    assert u.shape == (2, 3 * residual.dims(k), 2, 3)
    assert torch.allclose(residual.strip(stripped, k)[1], torch.zeros_like(u), atol=1e-9)  # nothing of it left
    removed, u_removed = residual.strip(x - stripped, k)
    assert torch.allclose(removed, torch.zeros_like(x), atol=1e-9)  # what was taken lies in the subspace
    assert torch.allclose(u_removed, u, atol=1e-9)


@pytest.mark.parametrize("spec", list(LAYOUTS))
def test_the_other_codes_are_left_alone(spec: tuple[int, int, str]) -> None:
    """The thumbnail code's basis images (on every block of a tiled image) and the mirror pattern (constant on 2x2
    blocks) have nothing in the residual code's subspace: ``strip`` leaves them intact, so the residual code neither
    removes nor disturbs them. Every layout leaves the room it should."""
    layout = CodeLayout.of(*spec)
    assert residual.dims(layout) == LAYOUTS[spec]
    t = template(32, 32, torch.zeros(1)).double()
    assert residual.strip(t, layout)[1].abs().max().item() == 0
    for block, coeffs in ((8, layout.base), (4, layout.detail)):
        for u, v in coeffs:
            basis = dct_basis(u, v, block).double().repeat(32 // block, 32 // block)
            weights = torch.randn(32 // block, 32 // block, dtype=torch.float64).repeat_interleave(block, 0)
            image = (basis * weights.repeat_interleave(block, 1))[None, None]
            assert residual.strip(image, layout)[1].abs().max().item() < 1e-7, (u, v)


def test_four_detail_coefficients_leave_no_room() -> None:
    """Four secrets with four detail coefficients fill the checkerboard space: the config refuses a residual code."""
    assert residual.dims(CodeLayout.of(4, 4)) == 0
    with pytest.raises(ValueError, match="leaves none"):
        get_config("tiny", num_secrets=4, detail_secrets=4, residual_gain=0.06)
    assert get_config("tiny", num_secrets=4, detail_secrets=4).code_layout.detail_secrets == 4


def test_what_is_written_reads_back_and_corrects_the_estimate(photo_factory) -> None:
    secret = _photos(photo_factory, 2, seed=10)
    stripped = residual.strip(_photos(photo_factory, 2, seed=20), 1)[0]
    estimate = F.avg_pool2d(secret, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)  # a 4x4 thumbnail
    stego = residual.write(stripped, secret, estimate, 0.06, 1)
    corrected = estimate + residual.read(residual.strip(stego, 1)[1], 0.06, 1)
    rounded = estimate + residual.read(residual.strip(D.quantize(stego), 1)[1], 0.06, 1)
    # What the code can carry: the projected correction outside the probe blocks.
    ideal = estimate + residual.spread(residual.carried(secret - estimate, 1), 1)
    images = (estimate, corrected, rounded, ideal)
    before, after, after8, best = (psnr(x * 255, secret * 255).mean().item() for x in images)
    assert best > before + 0.5, (before, best)
    assert abs(after - best) < 0.05, (after, best)  # read back exactly from a float stego
    assert after8 > before + 0.5, (before, after8)  # and most of it after 8-bit rounding
    # The code is small: about half a grey level RMS for photo-like content.
    assert ((stego - stripped) * 255).square().mean().sqrt().item() < 2.0


@pytest.mark.parametrize("attack", ["mean3", "gauss1", "noise20"])
def test_the_code_shuts_itself_off_where_it_did_not_survive(attack: str, photo_factory) -> None:
    secret = _photos(photo_factory, 2, seed=10)
    stripped = residual.strip(_photos(photo_factory, 2, seed=20), 1)[0]
    estimate = F.avg_pool2d(secret, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
    stego = D.quantize(residual.write(stripped, secret, estimate, 0.06, 1))
    gen = torch.Generator().manual_seed(0)
    seen = {
        "mean3": lambda x: D.mean_filter(x),
        "gauss1": lambda x: D.gaussian_filter(x, 1.0),
        "noise20": lambda x: D.gaussian_noise(x, 20.0, gen),
    }[attack](stego)
    correction = residual.read(residual.strip(D.quantize(seen), 1)[1], 0.06, 1)
    # Left on, the code would add its full amplitude of noise; gated, it adds (almost) nothing.
    assert (correction * 255).square().mean().sqrt().item() < 1.0


def test_a_model_with_the_residual_code_gives_more_secret_back_clean(photo_factory) -> None:
    """The same weights with and without the code: clean and mirrored stegos give the secret back better with it,
    and a blurred one no worse than a little (the gate shuts the code off)."""
    torch.manual_seed(0)
    plain = build_model(get_config("fast", light_score=True)).eval()
    coded = build_model(get_config("fast", light_score=True, residual_gain=0.06)).eval()
    coded.load_state_dict(plain.state_dict())
    cover, secret = _photos(photo_factory, 2, seed=30), _photos(photo_factory, 2, seed=40)
    with torch.no_grad():
        figures = {}
        for name, model in (("plain", plain), ("coded", coded)):
            stego = D.quantize(model.embed(cover, secret))
            for attack, seen in (("clean", stego), ("flip", stego.flip(-1)), ("mean3", D.mean_filter(stego))):
                rec = model.reveal(D.quantize(seen))
                figures[name, attack] = psnr(rec * 255, secret * 255).mean().item()
    assert figures["coded", "clean"] > figures["plain", "clean"] + 2, figures
    assert figures["coded", "flip"] > figures["plain", "flip"] + 2, figures
    assert figures["coded", "mean3"] > figures["plain", "mean3"] - 0.5, figures


def test_checkpoints_without_the_residual_code_load_without_it() -> None:
    from pipeline.model.migrate import config_from_dict

    old = {k: v for k, v in flat_config("fast").items() if k != "residual_gain"}  # a version-2 file from before it
    cfg = config_from_dict({"version": 2, **old})
    assert cfg.codes.residual.gain == 0.0


def test_the_configs_torch_free_room_count_is_the_codes() -> None:
    """``layout.residual_dims`` (the config's check, without torch) counts the room the code's maps have."""
    from pipeline.model.codes.layout import residual_dims
    from pipeline.model.codes.residual import dims

    layouts = [CodeLayout.of(k, d, b) for k in range(1, 5) for d in range(1, k + 1) for b in ("low", "quiet")]
    assert [residual_dims(la) for la in layouts] == [dims(la) for la in layouts]
    assert {dims(la) for la in layouts} >= {0, 3, 9, 11}  # no room, some, and all of it but one
