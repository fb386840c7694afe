"""Image-quality metrics on 8-bit images, following DESIGN.md section 3.

Inputs are (B, C, H, W) tensors on the 0-255 scale (uint8 or float holding integers); every function returns one
value per image, shape (B,), so tables can report means and standard deviations over images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> 8-bit-rounded float on 0-255 (what a saved image holds)."""
    return (x.clamp(0, 1) * 255).round()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """PSNR in dB over all channels; identical images give +inf."""
    return 10 * torch.log10(data_range**2 / mse(a, b))


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` luma (BT.601, studio range) of a 0-255 RGB image: (B, 3, H, W) -> (B, 1, H, W)."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64, device=x.device) / 255.0
    return (x.double() * w[None, :, None, None]).sum(1, keepdim=True) + 16.0


def psnr_y(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR of the Y channel (as HiNet reports it); equals ``psnr`` for one-channel images."""
    if a.shape[1] == 1:
        return psnr(a, b)
    return psnr(rgb_to_y(a), rgb_to_y(b))


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


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
    c = a.shape[1]
    k = _gaussian_window(win, sigma, dtype, a.device).expand(c, 1, win, win)
    mu_a, mu_b = F.conv2d(a, k, groups=c), F.conv2d(b, k, groups=c)
    saa = F.conv2d(a * a, k, groups=c) - mu_a**2
    sbb = F.conv2d(b * b, k, groups=c) - mu_b**2
    sab = F.conv2d(a * b, k, groups=c) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return smap if full else smap.flatten(1).mean(1)
