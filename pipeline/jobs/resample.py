"""Full-size images <-> the network's size N: what preprocess, compose, verify and extract do to pixels.

The network embeds at N x N; the job carries its residual to the image's own size and a receiver brings the stego
back to N before revealing. Two linear maps, one per direction, chosen together so that the receiver reads what the
network wrote:

    down  D: (H, W) -> (N, N)   ``to_network_size``: the area average (each output pixel the exact mean of its
                                 H/N x W/N cell, a pixel shared by two cells split by its overlap; OpenCV's
                                 INTER_AREA) when both sides are >= N; antialiased bilinear when a side is smaller.
    up    U: (N, N) -> (H, W)   ``compose``, two ways (``UPSAMPLE``):
          exact   U = D^T (D D^T)^-1 per axis: the smallest full-size residual whose area average is the network's
                  residual, so D(cover + U r) = D(cover) + r up to 8-bit rounding. A receiver sees the stego the
                  network made: the model's validated figures carry over to any image size.
          smooth  bilinear. D U is then a low-pass filter (a 3-tap [1/8, 3/4, 1/8] per axis for area down), a blur
                  of the residual before the receiver sees it: a lower cover change and a weaker secret.

Of all residuals the receiver reads exactly, ``exact`` has the least energy. The two carries' figures
(``benchmarks/job_quality.py``) are in the model card; the measurements that chose them in ``docs/history.md``.

Both maps are separable and, per axis, every full-size pixel draws on at most two network-size pixels, so ``compose``
works in stripes of rows with bounded memory for any image size.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core.metrics_u8 import squared_error_u8
from pipeline.model.digital.cpu_path import clip_keeping_luma, round_keeping_luma

if TYPE_CHECKING:
    import torch

UPSAMPLE = ("exact", "smooth")
# Rows of the full-resolution image composed at a time: bounds the float working memory to a stripe
# (512 rows x 8000 px x 3 x 4 B = 49 MB for a 50 MP photo) instead of a full-size float image (600 MB).
COMPOSE_STRIPE_ROWS = 512
# Images over this many pixels are averaged down in stripes (``to_network_size_float``).
AREA_STRIPE_PIXELS = 4_000_000


def quantize(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8 (rounded), any shape."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def uses_area(h: int, w: int, size: int) -> bool:
    """Whether an (h, w) image is brought to the network size by the area average (both sides >= size)."""
    return h >= size and w >= size


def to_network_size(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: the map D above, for covers and stegos (the aspect ratio is not
    kept). Area average (OpenCV, rounded) when both sides are >= size, else ``resize_bilinear``."""
    h, w = img.shape[:2]
    if (h, w) != (size, size) and uses_area(h, w, size):
        import cv2

        return cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_AREA)
    return resize_bilinear(img, size)


def to_network_size_float(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float32 in grey levels: ``to_network_size`` before its rounding, for the
    area average (else the rounded image itself). Composing against it, D(stego_full) is the network's stego up to
    the full-size rounding: the cover's own rounding at N (half a grey level) no longer lands in the receiver's
    readings."""
    h, w = img.shape[:2]
    if (h, w) == (size, size) or not uses_area(h, w, size):
        return to_network_size(img, size).astype(np.float32)
    import cv2

    if h * w <= AREA_STRIPE_PIXELS:
        return cv2.resize(img.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    # A large image in stripes of rows (a float copy of a 50 MP photo would be 600 MB): each stripe averaged along
    # x (OpenCV's area average, rows kept), then its rows added into the output rows they overlap (``area_taps``).
    i0, i1, a, b = area_taps(h, size)
    out = np.zeros((size, size, 3), np.float64)
    for top in range(0, h, COMPOSE_STRIPE_ROWS):
        rows = slice(top, min(h, top + COMPOSE_STRIPE_ROWS))
        stripe = cv2.resize(img[rows].astype(np.float32), (size, rows.stop - top), interpolation=cv2.INTER_AREA)
        np.add.at(out, i0[rows], stripe * a[rows, None, None])
        np.add.at(out, i1[rows], stripe * b[rows, None, None])
    return out.astype(np.float32)


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, antialiased bilinear with half-pixel centres, rounded: secrets
    (a smoother reference than the area average, 0.5 dB more secret PSNR on photos; not part of the channel) and
    images with a side below ``size``. Torch's uint8 channels-last kernel: the HWC array is viewed as NCHW without a
    copy, several times faster than Pillow on large downscales."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    import torch
    import torch.nn.functional as F

    if not img.flags.writeable or not img.flags.c_contiguous:  # torch wants a writable, contiguous buffer
        img = np.ascontiguousarray(img).copy() if not img.flags.writeable else np.ascontiguousarray(img)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).contiguous().numpy()


@lru_cache(maxsize=64)
def area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The area average n_in -> n_out (n_in >= n_out) as taps of its transpose: output i averages input pixels
    [i f, (i + 1) f), f = n_in / n_out. Returns, for every input pixel j, the two cells it overlaps (i0, i1; equal
    when it lies in one) and its weights in them (a, b): D[i0, j] = a[j], D[i1, j] = b[j].

    Exact in integers: positions are counted in 1 / n_out of a pixel, where cell i spans [i n_in, (i + 1) n_in).
    """
    j = np.arange(n_in, dtype=np.int64)
    lo, hi = j * n_out, (j + 1) * n_out  # pixel j in those units
    i0 = lo // n_in
    edge = (i0 + 1) * n_in  # the end of cell i0
    split = edge < hi
    i1 = np.where(split, np.minimum(i0 + 1, n_out - 1), i0)
    a = (np.minimum(edge, hi) - lo) / n_in
    b = np.where(split, hi - edge, 0) / n_in
    return i0, i1, a.astype(np.float64), b.astype(np.float64)


@lru_cache(maxsize=64)
def exact_upsample(n: int, n_full: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """U = D^T (D D^T)^-1 along one axis (n -> n_full) as a pre-filter and a two-tap interpolation:
    ``(P, i0, i1, t)`` with ``U r = lerp((P r)[i0], (P r)[i1], t)``, P (n, n) float32.

    A pixel's weights in its two cells sum to n / n_full (its length in cells), so D^T is that constant times a
    lerp, and the constant goes into P: compose then runs the same interpolation kernel for both maps."""
    i0, i1, a, b = area_taps(n_full, n)
    gram = np.zeros((n, n))
    np.add.at(gram, (i0, i0), a * a)
    np.add.at(gram, (i1, i1), b * b)
    np.add.at(gram, (i0, i1), a * b)
    np.add.at(gram, (i1, i0), a * b)
    prefilter = (np.linalg.inv(gram) * (n / n_full)).astype(np.float32)
    return prefilter, i0, i1, (b / (a + b)).astype(np.float32)


@lru_cache(maxsize=64)
def bilinear_taps(n: int, n_full: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear n -> n_full with half-pixel centres and edge clamping (torch's ``align_corners=False``) as a
    two-tap interpolation ``(i0, i1, t)``: ``lerp(r[i0], r[i1], t)``."""
    src = np.clip((np.arange(n_full, dtype=np.float64) + 0.5) * (n / n_full) - 0.5, 0, n - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _axis(n: int, n_full: int, exact: bool) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...]]:
    import torch

    if exact:
        prefilter, *taps = exact_upsample(n, n_full)
        return torch.from_numpy(prefilter), tuple(torch.from_numpy(t) for t in taps)
    return None, tuple(torch.from_numpy(t) for t in bilinear_taps(n, n_full))


def _spread(x: torch.Tensor, taps: tuple[torch.Tensor, ...], dim: int) -> torch.Tensor:
    """Two-tap interpolation of ``x`` along ``dim``: ``lerp(x[i0], x[i1], t)``."""
    import torch

    i0, i1, t = taps
    shape = [1] * x.dim()
    shape[dim] = -1
    return torch.lerp(x.index_select(dim, i0), x.index_select(dim, i1), t.reshape(shape))


def compose(
    cover_full: np.ndarray,
    cover_n: np.ndarray,
    stego_n: np.ndarray,
    upsample: str = "exact",
    keep_luma: bool = False,
) -> tuple[np.ndarray, float]:
    """stego_full = round(cover_full + U(stego_N - cover_N)), clipped to uint8; also the squared error sum.

    Args:
        cover_full: (H, W, 3) uint8. cover_n: (N, N, 3) uint8 or float32, the network's input
            (``to_network_size`` or ``to_network_size_float``).
        stego_n: (3, N, N) float32 in [0, 1]. upsample: ``exact`` or ``smooth`` (module docstring); ``exact``
            needs the area average, so an image with a side below N is composed ``smooth``.
        keep_luma: an image stored at N (a model with the digital layer, which writes luma) is clipped with
            ``clip_keeping_luma`` and rounded with ``round_keeping_luma``. At full size a plain clip and rounding
            are kept: the area average spreads their error (the held-out 1 MP crops read the same levels either
            way, at 0.014 dB more cover PSNR).
    Returns:
        (stego_full (H, W, 3) uint8, sum of squared differences to cover_full over all pixels and channels).
    """
    if upsample not in UPSAMPLE:
        raise ValueError(f"upsample must be one of {UPSAMPLE}, got {upsample!r}")
    h, w, _ = cover_full.shape
    n = cover_n.shape[0]
    if (h, w) == (n, n):  # the network saw the image itself: the stego is its output, 8-bit
        x = stego_n.transpose(1, 2, 0)
        out = store_at_n(x * 255) if keep_luma else quantize(x)
        return out, squared_error(out, cover_full)
    import torch  # the full-size path: imported here, so that a job storing at N never imports it

    exact = upsample == "exact" and uses_area(h, w, n)
    residual = torch.from_numpy(stego_n) * 255.0 - torch.from_numpy(cover_n).permute(2, 0, 1)  # (3, N, N)
    pre_y, taps_y = _axis(n, h, exact)
    pre_x, taps_x = _axis(n, w, exact)
    if exact:
        residual = pre_y @ residual @ pre_x.T  # P_y r P_x^T per channel
    residual = residual.permute(1, 2, 0)  # (N, N, 3)
    rx = _spread(residual, taps_x, dim=1).contiguous()  # (N, W, 3): along x for the N rows at once (small)
    cover = torch.from_numpy(cover_full)
    out = np.empty_like(cover_full)
    out_t = torch.from_numpy(out)
    for top in range(0, h, COMPOSE_STRIPE_ROWS):
        rows = slice(top, min(h, top + COMPOSE_STRIPE_ROWS))
        stripe = _spread(rx, tuple(t[rows] for t in taps_y), dim=0)
        stripe += cover[rows]
        out_t[rows] = stripe.round_().clamp_(0, 255).to(torch.uint8)
    return out, squared_error(out, cover_full)


def store_at_n(stego: np.ndarray) -> np.ndarray:
    """Stegos of the digital layer stored at the grid size: (..., N, N, 3) float grey levels -> uint8, clipped and
    rounded keeping each pixel's luma (``digital.cpu_path``: the layer writes luma, and a plain rounding or clip
    flips about 1% of the top level's readings)."""
    return round_keeping_luma(clip_keeping_luma(np.asarray(stego, dtype=np.float32)))


def squared_error(a: np.ndarray, b: np.ndarray) -> float:
    """The sum of squared differences of two uint8 images (an integer, ``squared_error_u8``)."""
    return float(squared_error_u8(a, b))
