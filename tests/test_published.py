"""The published-image conditions (issue 23): real codecs, resizes and shifts, the overlap metric of a shift, and
``validate``'s published-image bar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core import distortions as D
from pipeline.core.metrics import mse, psnr, to_255
from pipeline.evaluate import published as P

NAMES = [
    "jpeg90",
    "jpeg75",
    "jpeg50",
    "webp80",
    "resize0.5",
    "resize0.75",
    *[f"shift{k}" for k in range(1, 8)],
    "crop10",
]


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two photo-like 8-bit images (2, 3, 64, 72) in [0, 1] (not square: height and width must not be mixed up)."""
    from conftest import synthetic_photo

    arr = np.stack([synthetic_photo(64, 72, seed=s) for s in (3, 4)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def _mse255(a: torch.Tensor, b: torch.Tensor) -> float:
    return mse(to_255(a), to_255(b)).mean().item()


def test_the_published_conditions_are_the_issues_in_order_each_with_its_bar() -> None:
    assert list(P.PUBLISHED) == NAMES
    assert list(P.PUBLISHED_BAR) == NAMES
    assert P.PUBLISHED_BAR["jpeg90"] == 30 and P.PUBLISHED_BAR["jpeg50"] == 24 and P.PUBLISHED_BAR["resize0.75"] == 26
    assert P.PUBLISHED_BAR["webp80"] == 25 and P.PUBLISHED_BAR["shift7"] == 25 and P.PUBLISHED_BAR["crop10"] == 24
    assert {**{f"shift{k}": k for k in range(1, 8)}, "shift12": 12, "shift24": 24} == P.SHIFT_OF  # bar, family


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [3, 1])
def test_each_condition_keeps_shape_and_dtype_and_changes_the_image(
    photos: torch.Tensor, name: str, channels: int
) -> None:
    x = photos[:, :channels]
    y = P.PUBLISHED[name](x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-3)  # 8-bit values, as a decoded image holds
    assert _mse255(x, y) > 1.0, name  # a real change, not the 8-bit rounding


def test_stronger_settings_change_more(photos: torch.Tensor) -> None:
    change = {name: _mse255(photos, P.PUBLISHED[name](photos)) for name in NAMES}
    assert change["jpeg50"] > change["jpeg75"] > change["jpeg90"]
    assert change["resize0.5"] > change["resize0.75"]


def test_the_codecs_are_the_real_ones(photos: torch.Tensor) -> None:
    """JPEG is Pillow's 4:2:0 encoder, WebP is lossy, resize is OpenCV's INTER_AREA down and INTER_LINEAR up."""
    import io

    import cv2

    arr = (photos[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for name, fmt, kw in (("jpeg50", "JPEG", {"quality": 50}), ("webp80", "WEBP", {"quality": 80})):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **kw)
        want = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        got = (P.PUBLISHED[name](photos[:1])[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    down = cv2.resize(arr, (36, 32), interpolation=cv2.INTER_AREA)
    want = cv2.resize(down, (72, 64), interpolation=cv2.INTER_LINEAR)
    got = (P.PUBLISHED["resize0.5"](photos[:1])[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", range(1, 8))
def test_shift_moves_the_content_by_k_and_reflects_the_border(k: int) -> None:
    x = torch.arange(2 * 3 * 20 * 24, dtype=torch.float32).reshape(2, 3, 20, 24) / (2 * 3 * 20 * 24)
    h, w = x.shape[-2:]
    y = P.PUBLISHED[f"shift{k}"](x)
    assert torch.equal(y[..., : h - k, : w - k], x[..., k:, k:])
    # reflect-101 at the bottom and the right: padded row h-k+j is row h-2-j of the original
    assert torch.equal(y[..., h - k :, : w - k], x[..., h - k - 1 : h - 1, k:].flip(-2))
    assert torch.equal(y[..., : h - k, w - k :], x[..., k:, w - k - 1 : w - 1].flip(-1))


@pytest.mark.parametrize("k", [1, 4, 7])
def test_the_overlap_metric_finds_either_alignment(photos: torch.Tensor, k: int) -> None:
    secret = to_255(photos)
    h, w = secret.shape[-2:]
    # Revealed shifted with the stego: exact on the overlap, far off over the whole frame.
    moved = D.shift(secret, k)
    values, alignment = P.overlap_psnr(moved, secret, k)
    assert alignment == "with-stego" and torch.isinf(values).all()
    assert psnr(moved, secret).max() < 30
    a, b, _ = P.overlap_pair(moved, secret, k)
    assert a.shape[-2:] == b.shape[-2:] == (h - k, w - k)
    # Re-aligned to the original frame, the first k rows/columns lost (nothing there to reveal them from).
    realigned = secret.clone()
    realigned[..., :k, :] = 0
    realigned[..., :, :k] = 255
    values, alignment = P.overlap_psnr(realigned, secret, k)
    assert alignment == "original" and torch.isinf(values).all()
    assert psnr(realigned, secret).max() < 30
    # Neither: a finite figure, the better of the two.
    noisy = (moved + torch.randn(moved.shape, generator=torch.Generator().manual_seed(0)) * 8).clamp(0, 255).round()
    values, alignment = P.overlap_psnr(noisy, secret, k)
    assert alignment == "with-stego" and 25 < values.mean() < 35


class Passthrough(torch.nn.Module):
    """A "model" whose stego is the secret itself and whose reveal returns its input: after a shift the revealed
    secret is shifted with the stego, so its overlap is an exact copy (``EXACT_DB``)."""

    def embed(self, cover: torch.Tensor, secret: torch.Tensor) -> torch.Tensor:
        return secret

    def reveal(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_published_figures_measure_a_shift_on_the_overlap(photos: torch.Tensor) -> None:
    from pipeline.evaluate.quick import EXACT_DB, quick_validation

    res = quick_validation(Passthrough(), photos, photos.roll(1, 0), published=True)
    for k in range(1, 8):
        assert res[f"psnr_secret_shift{k}"] == EXACT_DB
        assert res["shift_alignment"][f"shift{k}"] == "with-stego"
    assert res["psnr_secret_jpeg90"] > res["psnr_secret_jpeg50"] > 20  # the codec on the secret itself
    assert not any("shift" in m for m in res["published_misses"])  # the codecs on small photos may miss their bars
    assert "psnr_secret_jpeg90" not in quick_validation(Passthrough(), photos, photos)  # training's figures only


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import synthetic_photo

    d = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.fromarray(synthetic_photo(80, 90, seed=10 + i)).save(d / f"p{i}.png")
    return d


def _validate(photo_dir: Path, checkpoint: Path, *extra: str):
    args = ["validate", "--data", str(photo_dir), "--checkpoint", str(checkpoint), "--size", "64", "--all-photos"]
    return CliRunner().invoke(main, [*args, *extra], catch_exceptions=False)


def test_validate_reports_the_published_figures(photo_dir: Path, tiny_checkpoint: Path) -> None:
    """An untrained model misses both bars: the figures are there, every published one listed as a miss."""
    res = _validate(photo_dir, tiny_checkpoint, "--json")
    assert res.exit_code == 4, res.output
    out = json.loads(res.output)
    for name in NAMES:
        assert np.isfinite(out[f"psnr_secret_{name}"]), name
    assert set(out["shift_alignment"]) == {f"shift{k}" for k in range(1, 8)}
    assert out["published_misses"] == [f"psnr_secret_{n}" for n in NAMES]
    assert out["published_margin"] < 0 and out["margin"] < 0
    assert "psnr_secret_mean3" in out["bar_misses"]

    text = _validate(photo_dir, tiny_checkpoint, "--bar", "published")
    assert text.exit_code == 4
    assert "secret PSNR jpeg50" in text.output and "secret PSNR shift7" in text.output
    assert "misses the published-image bar: jpeg90, jpeg75, jpeg50, webp80" in text.output
    assert _validate(photo_dir, tiny_checkpoint, "--bar", "nothing").exit_code == 2


def _figures(quality: float, shift3: float) -> dict:
    """A validation result's figures: every quality figure at ``quality`` dB (SSIM 0.99), every published one at
    30 dB but shift3, with the margins and misses computed as ``quick_validation`` does."""
    import pipeline.evaluate.quick as Q

    res = {"psnr_cover": quality, "ssim_cover": 0.99, "psnr_secret": quality}
    res.update({f"psnr_secret_{n}": quality for n in Q.QUICK_ATTACKS})
    res["psnr_secret_worst"] = quality
    res["margin"] = min(Q.bar_criteria(res).values())
    res.update({f"psnr_secret_{n}": 30.0 for n in P.PUBLISHED})
    res["psnr_secret_shift3"] = shift3
    criteria = Q.published_criteria(res)
    res["published_margin"] = min(criteria.values())
    res["published_misses"] = [f"psnr_secret_{n}" for n, d in criteria.items() if d < 0]
    return res


def test_bar_published_sets_the_verdict_when_a_published_figure_misses() -> None:
    """Quality bar met, one published figure missed: passes by default, fails with ``--bar published`` and says
    which; both met, passes either way; the quality bar missed, fails either way."""
    from pipeline.evaluate.quick import verdict_failed, verdict_lines

    one_miss = _figures(40.0, 24.9)
    assert not verdict_failed(one_miss) and verdict_failed(one_miss, "published")
    assert verdict_lines(one_miss, "published") == ["misses the published-image bar: shift3"]
    assert verdict_lines(one_miss)[-1] == "(the published-image bar sets the exit code only with --bar published)"
    both_met = _figures(40.0, 25.0)
    assert not verdict_failed(both_met) and not verdict_failed(both_met, "published")
    assert verdict_lines(both_met, "published") == []
    quality_missed = _figures(20.0, 30.0)
    assert verdict_failed(quality_missed) and verdict_failed(quality_missed, "published")
    assert verdict_lines(quality_missed)[0] == (
        "misses the quality bar: psnr_cover, psnr_secret, mean3, gauss1, sharpen, noise5, hflip"
    )
    with pytest.raises(ValueError, match="unknown bar"):
        verdict_failed(both_met, "nothing")


def test_validate_gives_each_secret_its_own_figures(photo_dir: Path, tmp_path: Path) -> None:
    """K = 2: besides the figure over both secrets, each secret's own, clean and after each distortion; the two
    differ (they are revealed from different coefficients) and bracket the joint figure."""
    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(get_config("tiny", num_secrets=2)), tmp_path / "k2.pt")
    res = _validate(photo_dir, ckpt, "--json")
    out = json.loads(res.output)
    for suffix in ("", "_mean3", "_gauss1", "_sharpen", "_noise5", "_hflip"):
        one, two = out[f"psnr_secret1{suffix}"], out[f"psnr_secret2{suffix}"]
        assert one != two and min(one, two) - 0.5 <= out[f"psnr_secret{suffix or ''}"] <= max(one, two) + 0.5
    assert "psnr_secret3" not in out
    text = _validate(photo_dir, ckpt).output
    assert "    secret 1: " in text and "    secret 2: " in text
