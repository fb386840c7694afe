"""Image-quality metrics on 8-bit images: PSNR, SSIM and the others the paper's tables report.

Inputs are (B, C, H, W) tensors on the 0-255 scale (uint8 or float holding integers); every function returns one
value per image, shape (B,), so tables can report means and standard deviations over images. ``psnr_from_mse`` is
the project's one PSNR formula: training's log, the batch job's per-image figures and evaluation all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pipeline.core.metrics_u8 import psnr_from_mse, ssim_u8

__all__ = ["psnr_from_mse", "ssim_u8"]  # and this module's own functions; those two live in ``metrics_u8``


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> 8-bit-rounded float on 0-255 (what a saved image holds)."""
    return (x.clamp(0, 1) * 255).round()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """PSNR in dB over all channels, (B, C, H, W) pairs -> (B,); identical images give +inf."""
    return psnr_from_mse(mse(a, b), data_range)


# A cover block is flat when its BT.601 luma varies by less than this (grey levels, standard deviation): flat sky,
# where a change is seen first. ``psnr_flat`` measures the change there alone.
FLAT_STD = 1.5


def psnr_flat(stego: torch.Tensor, cover: torch.Tensor, block: int = 8, flat_std: float = FLAT_STD) -> torch.Tensor:
    """PSNR (dB) of the stego over the cover's flat ``block`` x ``block`` blocks only, all channels, (B, C, H, W)
    pairs on 0-255 -> (B,); NaN for an image without a flat block, +inf where nothing changed there."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=cover.dtype, device=cover.device)
    luma = (cover * w[None, :, None, None]).sum(1, keepdim=True) if cover.shape[1] == 3 else cover
    flat = F.pixel_unshuffle(luma, block).std(dim=1, unbiased=False) < flat_std  # (B, h, w)
    err = F.pixel_unshuffle((stego.double() - cover.double()).pow(2).mean(1, keepdim=True), block).mean(1)
    n = flat.sum((1, 2))
    m = (err * flat).sum((1, 2)) / n.clamp(min=1)
    out = psnr_from_mse(m, 255.0)
    return torch.where(n > 0, out, torch.full_like(out, float("nan")))


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` luma (BT.601, studio range) of a 0-255 RGB image: (B, 3, H, W) -> (B, 1, H, W)."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64, device=x.device) / 255.0
    return (x.double() * w[None, :, None, None]).sum(1, keepdim=True) + 16.0


def psnr_y(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR of the Y channel (as HiNet reports it); equals ``psnr`` for one-channel images."""
    if a.shape[1] == 1:
        return psnr(a, b)
    return psnr(rgb_to_y(a), rgb_to_y(b))


def _gaussian_taps(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian (size,); the SSIM window is its outer product with itself."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    g = _gaussian_taps(size, sigma, dtype, device)
    return torch.outer(g, g)


def _separable_valid_(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Valid-region filtering of (..., H, W) with the separable kernel ``outer(taps, taps)``, as in-place sums of
    shifted slices (two new arrays per call). Depthwise ``conv2d`` has no fast CPU path: this is ~3x faster in
    float32 and ~10x in float64."""
    n = len(taps)
    h, w = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    rows = x[..., :, 0:w] * taps[0]
    for i in range(1, n):
        rows.add_(x[..., :, i : i + w], alpha=taps[i])
    out = rows[..., 0:h, :] * taps[0]
    for i in range(1, n):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def _ssim_terms(moments: Sequence[torch.Tensor], c1: float, c2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Local means and raw second moments (mu_a, mu_b, E[a^2], E[b^2], E[ab]) -> the SSIM and contrast-structure
    maps."""
    mu_a, mu_b, m_aa, m_bb, m_ab = moments
    va, vb, cov = m_aa - mu_a**2, m_bb - mu_b**2, m_ab - mu_a * mu_b
    cs = (2 * cov + c2) / (va + vb + c2)
    return (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs, cs


def _ssim_maps(a: torch.Tensor, b: torch.Tensor, data_range: float, win: int, sigma: float) -> tuple:
    """The SSIM and contrast-structure maps (B, C, H', W'), differentiable: one depthwise convolution per moment."""
    c = a.shape[1]
    k = _gaussian_window(win, sigma, a.dtype, a.device).expand(c, 1, win, win)
    moments = [F.conv2d(x, k, groups=c) for x in (a, b, a * a, b * b, a * b)]
    return _ssim_terms(moments, (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)


def _ssim_and_cs(a: torch.Tensor, b: torch.Tensor, data_range: float, win: int, sigma: float) -> tuple:
    """Per-image SSIM and contrast-structure term (means over the valid region and channels), both (B,)."""
    if a.requires_grad or b.requires_grad:
        s, cs = _ssim_maps(a, b, data_range, win, sigma)
        return s.flatten(1).mean(1), cs.flatten(1).mean(1)
    # Evaluation and the batch job's verify (every image): one channel at a time, so its five moment maps stay in
    # the CPU cache through the 2 x 11 filter passes (the whole batch at once ran at memory speed, 3x slower).
    taps = _gaussian_taps(win, sigma, a.dtype, a.device).tolist()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = torch.empty(2, a.shape[0] * a.shape[1], dtype=a.dtype, device=a.device)
    for i, (x, y) in enumerate(zip(a.flatten(0, 1), b.flatten(0, 1), strict=True)):
        s, cs = _ssim_terms(_separable_valid_(torch.stack([x, y, x * x, y * y, x * y]), taps), c1, c2)
        out[0, i], out[1, i] = s.mean(), cs.mean()
    s, cs = out.view(2, a.shape[0], a.shape[1]).mean(2)
    return s, cs


def ssim(
    a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0, win: int = 11, sigma: float = 1.5, full: bool = False
) -> torch.Tensor:
    """SSIM (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, valid region, mean over channels.

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=...)``. Differentiable when given float inputs.
    ``full=True`` returns the (B, C, H', W') map instead of per-image means.
    """
    dtype = a.dtype if a.is_floating_point() else torch.float64
    a, b = a.to(dtype), b.to(dtype)
    if full:
        return _ssim_maps(a, b, data_range, win, sigma)[0]
    return _ssim_and_cs(a, b, data_range, win, sigma)[0]


# Wang, Simoncelli & Bovik (2003): weights of the 5 scales, finest first.
MS_SSIM_BETAS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_scales(size: int, win: int = 11) -> int:
    """Number of MS-SSIM scales an image of shorter side ``size`` supports: 5 from 176 px up.

    Scale j (0-based) sees the image 2x2-average-pooled j times (``size // 2**j`` px, no padding, as the MATLAB
    reference and torchmetrics do); its valid-region SSIM needs at least ``win`` px there. (The often quoted 161 px
    assumes pooling that rounds up; with pooling that rounds down the 5th scale needs 176 px.)
    """
    if size < win:
        raise ValueError(f"MS-SSIM needs images of at least {win} px, got {size}")
    n = 1
    while n < len(MS_SSIM_BETAS) and size // 2**n >= win:
        n += 1
    return n


def ms_ssim(
    a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0, win: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) per image: (B, C, H, W) on 0-255 -> (B,).

    Standard definition: 5 scales, Gaussian window 11 / sigma 1.5 at each scale (valid region), 2x2 average pooling
    between scales, contrast-structure terms of scales 1-4 and the full SSIM of scale 5 raised to ``MS_SSIM_BETAS``.
    Colour images: each scale's terms are averaged over channels before the product (as torchmetrics does); negative
    terms are clipped to 0 (torchmetrics' ``normalize="relu"``) so that fractional powers stay real.

    Smaller images (shorter side < 176 px) cannot hold 5 scales: we use the first ``ms_ssim_scales(size)`` scales with
    their weights renormalised to sum to 1, so identical images still give 1 and values stay on the same scale; the
    report states how many scales were used.
    """
    dtype = a.dtype if a.is_floating_point() else torch.float64
    a, b = a.to(dtype), b.to(dtype)
    n = ms_ssim_scales(min(a.shape[-2:]), win)
    betas = torch.tensor(MS_SSIM_BETAS[:n], dtype=dtype, device=a.device)
    betas = betas / betas.sum()
    terms = []
    for j in range(n):
        s, cs = _ssim_and_cs(a, b, data_range, win, sigma)
        terms.append(s if j == n - 1 else cs)
        if j < n - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    stack = torch.stack(terms).clamp_min(0)  # (n, B)
    return (stack ** betas[:, None]).prod(0)


def scc(a: torch.Tensor, b: torch.Tensor, window: int = 8, eps: float = 1e-6) -> torch.Tensor:
    """Spatial correlation coefficient per image, the ``sewar.full_ref.scc`` convention: (B, C, H, W) -> (B,).

    Both images are high-passed with [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]] (symmetric border); local variances
    and covariance come from a ``window`` x ``window`` box filter over the zero-padded result ("same" size, as
    scipy's ``convolve2d``); the map cov / (sd_a * sd_b) is averaged over pixels and channels. Windows where either
    image is flat (local variance below ``eps``, on the 0-255 scale) count as 0, as sewar does. We compute in float64
    with this epsilon because torchmetrics' version (same convention) runs in float32 and tests the denominator for
    exact zero, so rounding noise in flat windows can give arbitrary values there.
    """
    a, b = a.double(), b.double()

    def high_pass(x: torch.Tensor) -> torch.Tensor:
        # The high-pass = 9 * centre - (3x3 box sum), with a symmetric border (replicate = scipy's "reflect" for a
        # one-pixel pad). sewar applies it through scipy's generic_laplace, i.e. once per axis: twice the filter.
        # The factor cancels in the coefficient; we keep it so that ``eps`` means the same as in sewar's units.
        return 2 * (9 * x - _separable_valid_(F.pad(x, (1, 1, 1, 1), mode="replicate"), [1.0, 1.0, 1.0]))

    ha, hb = high_pass(a), high_pass(b)
    lo, hi = window // 2, (window - 1) // 2  # where scipy's "same" output sits for an even window
    taps = [1.0 / window] * window

    def local(x: torch.Tensor) -> torch.Tensor:
        return _separable_valid_(F.pad(x, (lo, hi, lo, hi)), taps)

    mu_a, mu_b = local(ha), local(hb)
    var_a = (local(ha * ha) - mu_a**2).clamp_min(0)
    var_b = (local(hb * hb) - mu_b**2).clamp_min(0)
    cov = local(ha * hb) - mu_a * mu_b
    flat = (var_a < eps) | (var_b < eps)
    coef = torch.where(flat, torch.zeros_like(cov), cov / (var_a.sqrt() * var_b.sqrt()).clamp_min(eps))
    return coef.flatten(1).mean(1)
