"""Metrics cross-checked against independent implementations (scikit-image, torchmetrics, sewar) to 1e-3."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from pipeline.core import metrics_u8
from pipeline.core.metrics import (
    MS_SSIM_BETAS,
    _ssim_and_cs,
    ms_ssim,
    ms_ssim_scales,
    mse,
    psnr,
    psnr_y,
    scc,
    ssim,
    ssim_u8,
    to_255,
)

TOL = 1e-3


def _pairs(photo_factory, size: int, n: int = 3, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Photo-like uint8 images and distorted copies (noise of growing strength, then a blur): (n, C, size, size)."""
    a = torch.from_numpy(np.stack([photo_factory(size, size, seed=i, channels=channels) for i in range(n)]))
    a = a.permute(0, 3, 1, 2).contiguous()
    gen = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([2.0, 6.0, 15.0][:n])[:, None, None, None]
    b = (a.double() + torch.randn(a.shape, generator=gen, dtype=torch.float64) * sigmas).clamp(0, 255).round()
    b[-1] = torch.nn.functional.avg_pool2d(b[-1:], 3, 1, 1, count_include_pad=False)[0].round()
    return a, b.to(torch.uint8)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()


def test_psnr_mse_ssim_match_scikit_image(photo_factory) -> None:
    a, b = _pairs(photo_factory, 96)
    got_psnr, got_mse, got_ssim = psnr(a.double(), b.double()), mse(a, b), ssim(a.double(), b.double())
    for i in range(len(a)):
        ref_a, ref_b = _hwc(a[i]), _hwc(b[i])
        assert got_mse[i].item() == pytest.approx(mean_squared_error(ref_a, ref_b), abs=TOL)
        assert got_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(ref_a, ref_b, data_range=255), abs=TOL)
        ref_ssim = structural_similarity(
            ref_a, ref_b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
        )
        assert got_ssim[i].item() == pytest.approx(ref_ssim, abs=TOL)


@pytest.mark.parametrize("compiled", [True, False], ids=["C", "OpenCV"])
def test_batch_job_ssim_matches_the_reference(photo_factory, compiled: bool) -> None:
    """``ssim_u8`` (float32, what the batch job scores every image with; in C where built, else OpenCV) against the
    float64 reference, from nearly identical pairs (where float32 moments lose digits) to a flat image and an
    unrelated pair."""
    if compiled and metrics_u8._ssim is None and not os.environ.get("CI"):  # CI builds it (.ci/run installs)
        pytest.skip("the C SSIM is not built (pip install -e .)")
    a, b = _pairs(photo_factory, 96)
    a, b = torch.cat([a, a[:1], a[:1], a[:1]]), torch.cat([b, a[:1], torch.full_like(a[:1], 200), a[1:2]])
    b[3, 0, 10, 10] ^= 1  # one grey level in one pixel
    hwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    got = ssim_u8(hwc(a), hwc(b), compiled=compiled)
    ref = ssim(a.double(), b.double()).numpy()
    assert got.dtype == np.float64 and got.shape == (len(a),)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert got[3] < 1.0 and got[4] == pytest.approx(ref[4], abs=2e-5)


@pytest.mark.skipif(
    metrics_u8._ssim is None and not os.environ.get("CI"), reason="the C SSIM is not built (pip install -e .)"
)
def test_the_c_ssim_is_opencvs_figure_on_any_shape_and_refuses_what_it_cannot_score(photo_factory) -> None:
    a, b = (np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy()) for t in _pairs(photo_factory, 96))
    for x, y in ((a, b), (a[:, :37, :50], b[:, :37, :50]), (a[..., :1], b[..., :1])):  # odd sizes, one channel
        np.testing.assert_allclose(ssim_u8(x, y, compiled=True), ssim_u8(x, y, compiled=False), atol=1e-6)
    np.testing.assert_allclose(ssim_u8(a, b, win=7, sigma=1.0, compiled=True), ssim_u8(a, b, 7, 1.0, False), atol=1e-6)
    taps = metrics_u8.gaussian_taps(11, 1.5).astype(np.float32)
    with pytest.raises(ValueError, match="taps"):  # a window wider than the image
        metrics_u8._ssim.ssim(8, 8, 3, a[0, :8, :8].copy(), b[0, :8, :8].copy(), taps, 1.0, 1.0)
    with pytest.raises(ValueError, match="symmetric"):
        metrics_u8._ssim.ssim(96, 96, 3, a[0], b[0], np.arange(11, dtype=np.float32), 1.0, 1.0)
    with pytest.raises(ValueError, match="expected"):
        metrics_u8._ssim.ssim(96, 96, 3, a[0], b[0, :50], taps, 1.0, 1.0)


def test_psnr_y_matches_scikit_image_luma(photo_factory) -> None:
    a, b = _pairs(photo_factory, 64)
    got = psnr_y(a.double(), b.double())
    for i in range(len(a)):
        ya, yb = rgb2ycbcr(_hwc(a[i]))[..., 0], rgb2ycbcr(_hwc(b[i]))[..., 0]
        assert got[i].item() == pytest.approx(peak_signal_noise_ratio(ya, yb, data_range=255), abs=TOL)


def test_to_255_rounds_to_8_bits() -> None:
    x = torch.tensor([-0.1, 0.0, 0.5, 1.2, 100.4 / 255])
    assert to_255(x).tolist() == [0.0, 0.0, 128.0, 255.0, 100.0]


def test_ms_ssim_matches_torchmetrics_at_five_scales(photo_factory) -> None:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    a, b = _pairs(photo_factory, 256)
    got = ms_ssim(a, b)
    # float32 for the reference: torchmetrics' float64 convolutions take a minute on CPU; float32 is exact to ~1e-6.
    ref = tm_ms_ssim(b.float(), a.float(), data_range=255.0, reduction="none", normalize="relu")
    assert got.shape == (3,)
    assert torch.allclose(got, ref.double(), atol=TOL)
    assert torch.allclose(ms_ssim(a, a), torch.ones(3, dtype=torch.float64))
    assert got[0] > got[1]  # more noise, lower score


@pytest.mark.parametrize(
    ("size", "scales"), [(256, 5), (176, 5), (175, 4), (161, 4), (88, 4), (64, 3), (43, 2), (11, 1)]
)
def test_ms_ssim_scale_count(size: int, scales: int) -> None:
    assert ms_ssim_scales(size) == scales


def test_ms_ssim_small_images_use_fewer_renormalised_scales(photo_factory) -> None:
    """64 px: 3 scales. Each scale's terms are checked on their own (contrast-structure against torchmetrics, SSIM
    against scikit-image), then the product with the renormalised weights."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    a, b = _pairs(photo_factory, 64)
    x, y = a.double(), b.double()
    terms = []
    for j in range(3):
        s, cs = _ssim_and_cs(x, y, 255.0, 11, 1.5)
        _, ref_cs = tm_ssim(y, x, data_range=255.0, reduction="none", return_contrast_sensitivity=True)
        assert torch.allclose(cs, ref_cs, atol=TOL)
        for i in range(len(x)):
            ref_s = structural_similarity(
                _hwc(x[i]),
                _hwc(y[i]),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
                channel_axis=2,
            )
            assert s[i].item() == pytest.approx(ref_s, abs=TOL)
        terms.append(s if j == 2 else cs)
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    betas = torch.tensor(MS_SSIM_BETAS[:3], dtype=torch.float64)
    expected = (torch.stack(terms).clamp_min(0) ** (betas / betas.sum())[:, None]).prod(0)
    assert torch.allclose(ms_ssim(a, b), expected, atol=1e-9)
    assert torch.allclose(ms_ssim(a, a), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim(a[..., :10, :10], b[..., :10, :10])


@pytest.mark.parametrize("channels", [3, 1])
def test_scc_matches_sewar_and_torchmetrics(photo_factory, channels: int) -> None:
    import sewar
    from torchmetrics.functional.image import spatial_correlation_coefficient as tm_scc

    a, b = _pairs(photo_factory, 72, channels=channels)
    got = scc(a, b)
    ref_tm = tm_scc(b.double(), a.double(), reduction="none")
    assert torch.allclose(got, ref_tm.double(), atol=TOL)
    for i in range(len(a)):
        assert got[i].item() == pytest.approx(sewar.scc(_hwc(a[i]), _hwc(b[i])), abs=TOL)


def test_scc_flat_windows_count_zero(photo_factory) -> None:
    """A flat image has no high-pass energy: every window is flat and counts 0 (sewar's convention), never NaN."""
    flat = torch.full((1, 3, 32, 32), 77, dtype=torch.uint8)
    photo = torch.from_numpy(photo_factory(32, 32, seed=3)).permute(2, 0, 1)[None]
    assert scc(flat, flat).item() == 0.0
    assert scc(flat, photo).item() == 0.0
    half = photo.clone()
    half[..., :16] = 77  # left half flat: its windows count 0, the right half correlates perfectly
    value = scc(half, half).item()
    assert 0.3 < value < 0.8
    assert scc(photo, photo).item() == pytest.approx(1.0, abs=1e-9)


def test_ssim_asked_for_the_c_says_how_to_build_it_where_it_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(metrics_u8, "_ssim", None)
    a = np.zeros((1, 16, 16, 3), np.uint8)
    assert ssim_u8(a, a).tolist() == [1.0]  # OpenCV's filter then
    with pytest.raises(RuntimeError, match="pip install"):
        ssim_u8(a, a, compiled=True)


@pytest.mark.parametrize("compiled", [True, False], ids=["C", "OpenCV"])
def test_squared_error_is_exact(compiled: bool) -> None:
    """The sum of squared differences as an exact integer, on photos' sizes and odd ones, and at its largest (every
    byte 255 apart); two arrays of different shapes are refused."""
    if compiled and metrics_u8._ssim is None and not os.environ.get("CI"):  # CI builds it (.ci/run installs)
        pytest.skip("the C SSIM is not built (pip install -e .)")
    rng = np.random.default_rng(4)
    for shape in [(256, 256, 3), (1, 1, 3), (7, 13, 3), (1100, 900, 3)]:
        a, b = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
        want = int(((a.astype(np.int64) - b) ** 2).sum())
        assert metrics_u8.squared_error_u8(a, b, compiled=compiled) == want
    black, white = np.zeros((3000, 2000, 3), np.uint8), np.full((3000, 2000, 3), 255, np.uint8)
    assert metrics_u8.squared_error_u8(black, white, compiled=compiled) == 255**2 * black.size
    with pytest.raises(ValueError, match="one shape"):
        metrics_u8.squared_error_u8(black[:1], white[:2], compiled=compiled)


def test_squared_error_asked_for_the_c_says_how_to_build_it_where_it_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(metrics_u8, "_ssim", None)
    a = np.zeros((4, 4, 3), np.uint8)
    assert metrics_u8.squared_error_u8(a, a + 2) == 4 * a.size  # OpenCV's norm then
    with pytest.raises(RuntimeError, match="pip install"):
        metrics_u8.squared_error_u8(a, a, compiled=True)
