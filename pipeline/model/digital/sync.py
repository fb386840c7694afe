"""Synchronisation of the digital layer: find the 8x8 grid in whatever arrives, and undo a filter.

Registration. Every level's readings lie near its keyed lattices only on the grid it was written on. The statistic

    z = |sum_{blocks, k} exp(4 pi i (c_k / step_k - dither_k))| / sqrt(n)

over the base level's n readings is about 1 (Rayleigh) for a wrong grid, a wrong key or an unmarked image, and
R sqrt(n) on the right one (R the concentration, 0.2 to 1 after the conditions measured). The search finds, for
every pixel phase of the grid (64), the block offset by one FFT cross-correlation of the readings' phasors with the
keyed dither's phasors over the whole grid: shifts of any size, in either direction. It tries the image as it is and
mirrored, and, for crops that were resampled back to the grid's size, a ladder of magnifications; the identity is
tried first and kept when its z is convincing, so an image that was not moved costs one reading.

Filters. A blur, sharpening or a resize scales each DCT coefficient by the filter's response at its frequency and
mixes neighbouring blocks in, which moves readings off their lattices (a 3x3 mean leaves a bit error rate of 0.24).
The family of symmetric 3x3 kernels with unit gain, H = 1 - a (p + q) + b p q with p = 1 - cos(wy), q = 1 - cos(wx),
spans the mean and Gaussian filters and their separable cousins (b = a^2) and sharpening (b = 0, a < 0); the reader
inverts each candidate in the Fourier domain (Wiener-regularised) and keeps the one whose readings are most
concentrated, or none. Measurements: the model card.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model.digital.modulation import BLOCK, block_dct_matrix, concentration, lattice_phase, luma

# z above which a grid hypothesis is taken without searching further (a wrong grid gives about 1, and the maximum
# over the whole search of some 10^6 hypotheses about 4.5).
ACCEPT_Z = 8.0
# Crops: the received image is read at every side a crop keeping CROP_KEEP of each side or more would have on the
# grid. The host's own coefficients are tens of steps large, so a side off by a pixel already moves the readings off
# their lattices at the far edge: rungs of 3 px with a refinement around the best missed half of the 10% crops of
# the held-out photos (their z at the nearest rung was that of noise).
CROP_KEEP = 0.84
# Filter candidates: (a, b) of the kernel family above. Sharpening side first, then the separable blurs.
FILTERS = tuple((round(a, 3), 0.0) for a in np.arange(-2.4, -0.05, 0.15)) + tuple(
    (round(a, 3), round(a * a, 4)) for a in np.arange(0.05, 0.81, 0.05)
)
WIENER = 0.01  # regularisation of the inverse filter (|H|^2 + WIENER)
PAD = 16


@dataclass(frozen=True)
class Grid:
    """Where the grid lies in a received image, once it is resampled to the grid size.

    ``side``: the received image is resampled to side x side (the grid size unless it is a crop: then the side its
    content has on the grid); ``mirrored``: then flipped left-right; ``dy, dx``: its pixel (i, j) is the grid's
    pixel (i + dy, j + dx); ``z``: the statistic found."""

    z: float
    side: int = 0  # 0: the grid size
    mirrored: bool = False
    dy: int = 0
    dx: int = 0

    @property
    def identity(self) -> bool:
        return not self.mirrored and self.side == 0 and self.dy == 0 and self.dx == 0


@functools.lru_cache(maxsize=8)
def _basis_kernels(coeffs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """(S, 1, 8, 8) basis images of ``coeffs``: a stride-1 convolution gives the coefficients at every phase."""
    m = block_dct_matrix()
    return torch.stack([m[u * BLOCK + v].view(1, BLOCK, BLOCK) for u, v in coeffs])


def phasors(y: torch.Tensor, coeffs: tuple[tuple[int, int], ...], steps: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) luma -> (S, H-7, W-7) complex exp(4 pi i c / step) of every coefficient at every pixel."""
    c = F.conv2d(y, _basis_kernels(coeffs).to(y.dtype))[0]  # (S, H-7, W-7)
    angle = 4 * math.pi * c / steps.view(-1, 1, 1).to(y.dtype)
    return torch.polar(torch.ones_like(angle), angle)


def translation_search(y: torch.Tensor, coeffs, steps: torch.Tensor, dither: torch.Tensor) -> Grid:
    """The best (dy, dx) for luma ``y`` (1, 1, H, W) against a level's dither (gh, gw, S) on the grid: every pixel
    phase (all 64 in one batch), every block offset (an FFT cross-correlation), normalised to z."""
    gh, gw, _ = dither.shape
    ph = phasors(y, coeffs, steps)  # (S, H-7, W-7)
    ha, wa = -(-ph.shape[1] // BLOCK), -(-ph.shape[2] // BLOCK)
    a = torch.zeros(BLOCK * BLOCK, ph.shape[0], ha, wa, dtype=ph.dtype)
    w = torch.zeros(BLOCK * BLOCK, 1, ha, wa)
    for py in range(BLOCK):
        for px in range(BLOCK):
            blocks = ph[:, py::BLOCK, px::BLOCK]  # the blocks starting at this phase
            a[py * BLOCK + px, :, : blocks.shape[1], : blocks.shape[2]] = blocks
            w[py * BLOCK + px, :, : blocks.shape[1], : blocks.shape[2]] = 1
    size = (ha + gh, wa + gw)
    dph = torch.polar(torch.ones_like(dither), 4 * math.pi * dither).permute(2, 0, 1)  # (S, gh, gw)
    corr = torch.fft.ifft2(torch.conj(torch.fft.fft2(a, s=size)) * torch.fft.fft2(dph, s=size)).sum(1)
    ones = torch.fft.fft2(torch.ones(1, gh, gw), s=size)
    count = torch.fft.ifft2(torch.conj(torch.fft.fft2(w, s=size)) * ones).real[:, 0].round()  # overlapping blocks
    z = corr.abs() / (count.clamp(min=1.0) * len(coeffs)).sqrt()
    z = torch.where(count >= 0.25 * gh * gw, z, torch.zeros_like(z))  # at least a quarter of the grid overlaps
    i = int(z.argmax())
    phase, rest = divmod(i, size[0] * size[1])
    oy, ox = divmod(rest, size[1])
    oy = oy - size[0] if oy >= gh else oy  # corr[o] = sum conj(a[i]) d[i + o]; negative offsets wrap to the end
    ox = ox - size[1] if ox >= gw else ox
    py, px = divmod(phase, BLOCK)
    return Grid(z=float(z.flatten()[i]), dy=BLOCK * oy - py, dx=BLOCK * ox - px)


def identity_z(y: torch.Tensor, coeffs, steps: torch.Tensor, dither: torch.Tensor, weight=None) -> float:
    """z of the unmoved grid (the fast path: most images arrive where they were written)."""
    from pipeline.model.digital.modulation import block_dct, coefficient_index

    gh, gw, _ = dither.shape
    c = block_dct(y[..., : gh * BLOCK, : gw * BLOCK])[0][..., coefficient_index(coeffs)]
    e = lattice_phase(c, dither, steps)
    w = torch.ones(gh, gw) if weight is None else weight.float()
    angle = 4 * math.pi * e
    s = torch.complex((torch.cos(angle) * w[..., None]).sum(), (torch.sin(angle) * w[..., None]).sum())
    return float(s.abs() / math.sqrt(max(1.0, float(w.sum()) * len(coeffs))))


def resize_to(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w): bilinear, antialiased when shrinking. (An area average at a factor that is not
    a whole number pools windows of varying width and jitters the grid: a 10% crop read at z 4-13 with it, 19-30
    with this.)"""
    if img.shape[-2:] == (h, w):
        return img
    if h <= img.shape[-2] and w <= img.shape[-1]:
        return F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False)


def apply_grid(received: torch.Tensor, grid: Grid, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, H, W) received image (any size) -> (the image on the written grid (1, C, size, size), (size, size)
    bool: the pixels it covers). Pixels the received image does not cover are filled by replicating its edge."""
    side = grid.side or size
    x = resize_to(received, side, side)
    x = x.flip(-1) if grid.mirrored else x
    out_y0, out_x0 = max(0, grid.dy), max(0, grid.dx)
    in_y0, in_x0 = max(0, -grid.dy), max(0, -grid.dx)
    hh, ww = min(side - in_y0, size - out_y0), min(side - in_x0, size - out_x0)
    covered = torch.zeros(size, size, dtype=torch.bool)
    if hh <= 0 or ww <= 0:
        return resize_to(received, size, size), covered
    canvas = x[..., in_y0 : in_y0 + hh, in_x0 : in_x0 + ww]
    pad = (out_x0, size - out_x0 - ww, out_y0, size - out_y0 - hh)
    covered[out_y0 : out_y0 + hh, out_x0 : out_x0 + ww] = True
    return F.pad(canvas, pad, mode="replicate"), covered


def _search_side(y: torch.Tensor, side: int, size: int, coeffs, steps, dither, mirror: bool = True) -> Grid:
    """The best translation of luma ``y`` (any size) read at ``side`` x ``side``, as it is and (``mirror``)
    mirrored."""
    small = resize_to(y, side, side)
    best = Grid(z=0.0)
    for mirrored in (False, True) if mirror else (False,):
        g = translation_search(small.flip(-1) if mirrored else small, coeffs, steps, dither)
        if g.z > best.z:
            best = Grid(g.z, 0 if side == size else side, mirrored, g.dy, g.dx)
    return best


def find_grid(
    y: torch.Tensor, size: int, coeffs, steps: torch.Tensor, dither: torch.Tensor, search: bool = True
) -> Grid:
    """The grid of the received luma ``y`` (1, 1, H, W), read on a ``size`` grid: the identity when convincing, else
    the best of the translation search (as it is and mirrored), then of the sides a crop would have (as it is: a
    crop of a mirrored stego is not searched for, which halves the search an unmarked image costs)."""
    best = Grid(z=identity_z(resize_to(y, size, size), coeffs, steps, dither))
    if best.z >= ACCEPT_Z or not search:
        return best
    args = (size, coeffs, steps, dither)
    moved = _search_side(y, size, *args)
    best = moved if moved.z > best.z else best
    if best.z >= ACCEPT_Z:
        return best
    crops = Grid(z=0.0)
    for side in range(size - 1, int(size * CROP_KEEP) - 1, -1):
        crops = max(crops, _search_side(y, side, *args, mirror=False), key=lambda g: g.z)
        if crops.z >= ACCEPT_Z and side <= crops.side - 2:  # convincing, and two sides past it read no better
            break
    return crops if crops.z > best.z else best


def _response(a: float, b: float, h: int, w: int) -> torch.Tensor:
    wy = 2 * math.pi * torch.fft.fftfreq(h, dtype=torch.float64)
    wx = 2 * math.pi * torch.fft.fftfreq(w, dtype=torch.float64)
    p, q = (1 - torch.cos(wy))[:, None], (1 - torch.cos(wx))[None, :]
    return (1 - a * (p + q) + b * p * q).float()


def inverse_filter(img: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """(B, C, H, W) -> the Wiener inverse of kernel (a, b) applied (reflected borders)."""
    x = F.pad(img, (PAD,) * 4, mode="reflect")
    r = _response(a, b, *x.shape[-2:])
    out = torch.fft.ifft2(torch.fft.fft2(x) * (r / (r * r + WIENER))).real
    return out[..., PAD:-PAD, PAD:-PAD]


def find_filter(
    y: torch.Tensor, coeffs, steps: torch.Tensor, dither: torch.Tensor, weight=None
) -> tuple[float, float] | None:
    """The filter (a, b) whose inverse makes luma ``y`` (1, 1, size, size) read most concentrated on the grid, or
    None when no candidate beats the image as it is by 10%."""
    from pipeline.model.digital.modulation import block_dct, coefficient_index

    idx = coefficient_index(coeffs)

    def score(yy: torch.Tensor) -> torch.Tensor:  # (n, 1, H, W) -> (n,)
        e = lattice_phase(block_dct(yy)[..., idx], dither, steps)
        if weight is not None:
            e = e[:, weight]
        return concentration(e.reshape(e.shape[0], -1, e.shape[-1]), (1,)).mean(-1)

    base = float(score(y)[0])
    x = F.pad(y, (PAD,) * 4, mode="reflect")
    fx = torch.fft.fft2(x)
    r = torch.stack([_response(a, b, *x.shape[-2:]) for a, b in FILTERS])[:, None]
    cand = torch.fft.ifft2(fx * (r / (r * r + WIENER))).real[..., PAD:-PAD, PAD:-PAD]
    s = score(cand)
    i = int(s.argmax())
    return (float(FILTERS[i][0]), float(FILTERS[i][1])) if float(s[i]) > 1.1 * base else None


__all__ = ["Grid", "apply_grid", "find_filter", "find_grid", "inverse_filter", "luma", "resize_to"]
