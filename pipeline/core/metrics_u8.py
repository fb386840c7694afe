"""The batch jobs' per-image figures on 8-bit arrays, in NumPy and OpenCV, without torch: PSNR from a squared error
(the project's one formula, for tensors too) and SSIM on uint8 pairs. ``metrics.py`` has the rest, in torch."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

try:  # the C SSIM, built by the install (setup.py); where it could not be, OpenCV's filter
    from pipeline.core import _ssim
except ImportError:
    _ssim = None


def psnr_from_mse(m: Any, data_range: float = 255.0) -> Any:
    """PSNR in dB of mean squared errors on a ``data_range`` scale: 10 log10(range^2 / MSE), +inf where the MSE is 0.

    Takes a tensor (kept on its device and dtype, differentiable), a NumPy array or a float (float64 results)."""
    # A tensor means torch is imported; never import it here, nor touch the module unless handed a tensor (another
    # thread may be importing it: a half-initialised module has no ``Tensor`` yet).
    if type(m).__module__.startswith("torch"):
        return 10 * sys.modules["torch"].log10(data_range**2 / m)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / np.asarray(m, dtype=np.float64))


def _use_c(compiled: bool | None) -> bool:
    """Whether to run the C part (``_ssim.c``): ``compiled`` None, where it is built; True asks for it (an error that
    says how to build it where it is not); False, the OpenCV path."""
    if compiled and _ssim is None:
        raise RuntimeError("the C SSIM is not built: `pip install -e .` builds it (a C compiler needed)")
    return _ssim is not None if compiled is None else compiled


def squared_error_u8(a: np.ndarray, b: np.ndarray, compiled: bool | None = None) -> int:
    """The sum of squared differences of two uint8 arrays of one shape (an exact integer): in C (``_ssim.c``) where
    it is built (the jobs' figures then need no OpenCV: 17 ms of import on the GIL), else OpenCV's ``norm``."""
    if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected two uint8 arrays of one shape, got {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    if _use_c(compiled):
        return _ssim.squared_error(np.ascontiguousarray(a), np.ascontiguousarray(b))
    import cv2

    return round(cv2.norm(np.ascontiguousarray(a), np.ascontiguousarray(b), cv2.NORM_L2SQR))


def gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian (size,) float64; the SSIM window is its outer product with itself."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_u8(
    a: np.ndarray, b: np.ndarray, win: int = 11, sigma: float = 1.5, compiled: bool | None = None
) -> np.ndarray:
    """``ssim`` of uint8 image pairs (B, H, W, C) -> (B,) float64: in C (``_ssim.c``) where it is built, else with
    OpenCV's separable filter (``compiled``: None, the C where built; False, OpenCV).

    The batch job scores every image it writes (cover and each secret), where the torch implementation was the
    largest cost of the verify stage (~15 ms per 256 px pair on one core); OpenCV's vectorised ``sepFilter2D`` on
    the interleaved channels takes ~4x less, and the C, which filters only the valid region's rows as they come
    and releases the GIL, half as much again (``docs/model.md``). Same window, constants and valid region; moments
    in float32 (both agree with the float64 reference to ~1e-5, and with each other to ~1e-6, checked in the tests).
    """
    taps = gaussian_taps(win, sigma).astype(np.float32)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    if _use_c(compiled) and len(a):
        return np.array(
            [
                _ssim.ssim(*x.shape, np.ascontiguousarray(x), np.ascontiguousarray(y), taps, c1, c2)
                for x, y in zip(a, b, strict=True)
            ]
        )
    import cv2

    r = win // 2
    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        # Contiguous float32 copies (callers pass transposed views), centred on 128 so that the variances do not
        # lose their digits to the squared means in float32. The maps are computed at full size, where the
        # arithmetic runs on contiguous memory, and only the valid region is averaged.
        x = np.subtract(np.ascontiguousarray(x), 128, dtype=np.float32)  # a uint8 copy first: converting a
        y = np.subtract(np.ascontiguousarray(y), 128, dtype=np.float32)  # strided view to float was 2x slower
        mu_x, mu_y = cv2.sepFilter2D(x, -1, taps, taps), cv2.sepFilter2D(y, -1, taps, taps)
        var = cv2.sepFilter2D(x * x + y * y, -1, taps, taps) - (mu_x * mu_x + mu_y * mu_y)  # var_x + var_y
        cov = cv2.sepFilter2D(x * y, -1, taps, taps) - mu_x * mu_y
        mu_x += 128
        mu_y += 128
        num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        den = (mu_x * mu_x + mu_y * mu_y + c1) * (var + c2)
        out[i] = float(np.mean((num / den)[r:-r, r:-r], dtype=np.float64))
    return out
