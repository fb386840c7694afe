"""SRIS-Net's inference graph (``embed`` / ``reveal``, what the engines export) computes what the training graph
(``embed_raw`` / ``reveal_raw``) computes, and the pieces it is built from equal what they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.core import distortions as D
from pipeline.model import build_model, get_config
from pipeline.model.codes.mirror import _highpass, add_template, is_mirrored, mirror_direction, mirror_score, template
from pipeline.model.folded import fold, upsample_folded


def _perturbed(preset: str, **overrides) -> torch.nn.Module:
    """A model whose every weight is away from its initialisation (the deep heads start near zero, the thumbnail code at
    its analytic code: both would hide a wrong rearrangement)."""
    torch.manual_seed(0)
    model = build_model(get_config(preset, **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.02 + 0.1 * p.abs().mean()))
    return model


@pytest.mark.parametrize(
    ("preset", "overrides", "size"),
    [
        ("fast", {}, (64, 64)),
        ("fast", {"num_secrets": 2}, (64, 96)),
        ("fast", {"light_score": True}, (64, 64)),
        ("fast", {"light_score": True, "residual_gain": 0.06}, (64, 64)),  # the fine code: embed runs reveal inside
        ("fast", {"num_secrets": 2, "residual_gain": 0.06}, (64, 96)),
        # a detail coefficient per secret (the K = 2 file's layout), and the quiet base layout (K = 4's)
        ("fast", {"num_secrets": 2, "detail_secrets": 2, "residual_gain": 0.06, "base_tile": True}, (64, 96)),
        ("fast", {"num_secrets": 2, "detail_secrets": 2, "code_last": True, "mirror": "pattern"}, (64, 96)),
        ("fast", {"num_secrets": 4, "base_layout": "quiet", "residual_gain": 0.06, "mirror": "pilot"}, (64, 64)),
        # the tile-coded base (the shipped model's code from stage 12), with a partial tile at the right edge
        ("fast", {"light_score": True, "residual_gain": 0.06, "base_tile": True}, (64, 96)),
        ("tiny", {"residual_gain": 0.06}, (48, 48)),
        # the mirror read from the base pilot, no sync pattern (the shipped model's from stage 14)
        ("fast", {"light_score": True, "residual_gain": 0.06, "base_tile": True, "mirror": "pilot"}, (64, 96)),
        # legacy: a revealer wider and deeper than the embedder (``reveal_config``)
        ("fast", {"legacy": {"reveal": {"width": 48, "level_widths": [48, 96, 96, 96], "dms_blocks": 2}}}, (64, 64)),
        ("small", {"score_map": False}, (72, 56)),
        ("tiny", {}, (48, 48)),  # stem stride 2: the training graph itself runs (nothing to rearrange)
    ],
)
def test_inference_graph_equals_the_training_graph(preset: str, overrides: dict, size: tuple[int, int]) -> None:
    model = _perturbed(preset, **overrides)
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    cover = torch.rand(3, cfg.channels, *size, generator=g)
    secrets = torch.rand(3, cfg.num_secrets * cfg.channels, *size, generator=g)
    with torch.no_grad():
        stego = model.embed(cover, secrets)
        assert (stego - model.embed_raw(cover, secrets).clamp(0, 1)).abs().max().item() < 1e-5
        assert (stego - cover).abs().mean().item() > 1e-3  # something was embedded
        seen = D.quantize(stego)
        seen[1] = seen[1].flip(-1)  # a mirrored one: the sync decision is part of the graph
        revealed = model.reveal(seen)
        assert (revealed - model.reveal_raw(seen)[0].clamp(0, 1)).abs().max().item() < 1e-5
        assert revealed.shape == secrets.shape


@pytest.mark.parametrize("s", [2, 4, 8])
def test_upsample_folded_is_fold_of_the_bilinear_upsampling(s: int) -> None:
    x = torch.rand(2, 5, 7, 12)
    expected = fold(F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False), s)
    assert (upsample_folded(x, s) - expected).abs().max().item() < 1e-6


def test_mirror_direction_is_the_mirror_score_numerator() -> None:
    """<x, D> = <highpass(x), T - mirror(T)> for any x, so its sign is the mirror decision."""
    x = torch.rand(2, 3, 40, 24, dtype=torch.float64)
    t = template(40, 24, x)
    numerator = (_highpass(x) * (t - t.flip(-1))).sum(dim=(1, 2, 3))
    direction = mirror_direction(3, 40, 24, x.float()).double()
    assert torch.allclose((x * direction).sum(dim=(1, 2, 3)), numerator, rtol=1e-5, atol=1e-9)
    smooth = F.interpolate(torch.rand(4, 3, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)
    stego = D.quantize(add_template(smooth, 1.0))
    batch = torch.cat([stego, stego.flip(-1)])
    assert torch.equal(is_mirrored(batch), mirror_score(batch) < 0)
    assert is_mirrored(batch).tolist() == [False] * 4 + [True] * 4
