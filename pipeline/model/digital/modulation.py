"""Modulation of the digital layer: dithered QIM on luma 8x8 block-DCT coefficients, and its soft reading.

Each layer writes one bit into each of its slots: a (block, coefficient) pair. The coefficient c of the stego's
luma (BT.601, as JPEG computes it) is moved onto the lattice of its bit,

    c' = c + alpha * (Q(c - o) + o - c),   o = (dither + bit / 2) * step,  Q(x) = step * round(x / step)

where ``dither`` in [0, 1) is drawn from the key per slot. The change is added to R, G and B alike, which leaves
the chroma (Cb, Cr) as it was: JPEG's and WebP's 4:2:0 subsampling, which would halve a chroma code, never sees it.

``step`` is the layer's multiple of JPEG's quality-50 luminance table at that coefficient: a code must outlast the
quantiser of the codec it is meant for, and that table is what every JPEG quality scales. Blocks whose cover is flat
(luma standard deviation under ``flat_std`` grey levels) carry nothing and stay untouched: a change there is what the
eye sees first (flat sky), and SSIM pays most for it. The reader cannot know the cover's flatness exactly; it reads
every block, and a flat block's reading is a random point with no preference between the lattices, which the
channel decoder takes as a weak error.

Reading gives a log-likelihood ratio per slot. With e = frac(c / step - dither) the distance to the bit-0 lattice in
steps is d0 = min(e, 1 - e) and to the bit-1 lattice 0.5 - d0, so for Gaussian noise of standard deviation sigma

    LLR = (0.25 - d0) * step^2 / (2 sigma^2)      (positive: bit 0 more likely)

and sigma / step follows from the concentration R = |mean exp(4 pi i e)| of the readings on the union of both
lattices, R = exp(-8 pi^2 (sigma / step)^2), measured per coefficient over the image. R also says whether an image
carries the layer at all (about 1/sqrt(n) without it) and, maximised over hypotheses, where its grid lies
(``sync.py``).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from pipeline.model.digital.codewords import BLOCK, LUMA_WEIGHTS, MIN_SIGMA, coefficient_positions


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int = BLOCK) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    rows = [
        (math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)) * torch.cos(math.pi * (i + 0.5) * k / n) for k in range(n)
    ]
    return torch.stack(rows)


@functools.lru_cache(maxsize=4)
def block_dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """(n*n, n*n) float32: row u*n + v is the basis image of coefficient (u, v), flattened as ``pixel_unshuffle``
    folds a block (dy * n + dx). Folded pixels @ M.T -> coefficients; coefficients @ M -> folded pixels."""
    d = _dct_matrix(n)
    return torch.kron(d, d).float()


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): BT.601 luma, in the input's scale."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


def clip_keeping_luma(x: torch.Tensor, top: float = 1.0, dim: int = 1) -> torch.Tensor:
    """RGB (channels along ``dim``) clipped to [0, ``top``], with the luma that clipping a channel loses put back on
    the pixel's other channels as far as they have room. The layer writes luma, added to R, G and B alike: where one
    channel clips, a plain clip loses that channel's share of the change and moves the block's readings off their
    lattices (every 1 MP stego of the held-out crops lost some top-level readings that way). Only the pixels that
    clip are worked on."""
    out = x.clamp(0, top)
    outside = ((x < 0) | (x > top)).any(dim)
    if not bool(outside.any()):
        return out
    moved = x.movedim(dim, -1)[outside]  # (P, 3): the pixels that clip
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
    target = moved @ w
    fixed = moved.clamp(0, top)
    for _ in range(2):  # a channel that takes the loss may clip in turn: a second pass puts that back too
        lost = (target - fixed @ w)[:, None]
        room = torch.where(lost > 0, fixed < top, fixed > 0).to(x.dtype)
        share = (room @ w)[:, None].clamp(min=1e-6)
        fixed = (fixed + room * lost / share).clamp(0, top)
    out = out.movedim(dim, -1).clone()
    out[outside] = fixed
    return out.movedim(-1, dim)


def block_dct(y: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, H/8, W/8, 64): the orthonormal 8x8 DCT of every block, coefficient u*8+v last."""
    folded = F.pixel_unshuffle(y, BLOCK)  # (B, 64, h, w)
    m = block_dct_matrix().to(y.device, y.dtype)
    return torch.einsum("bkhw,ck->bhwc", folded, m)


def block_idct(c: torch.Tensor) -> torch.Tensor:
    """(B, h, w, 64) coefficients -> (B, 1, 8h, 8w) pixels (the inverse of ``block_dct``)."""
    m = block_dct_matrix().to(c.device, c.dtype)
    return F.pixel_shuffle(torch.einsum("bhwc,ck->bkhw", c, m), BLOCK)


def coefficient_index(coeffs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Positions (u*8 + v) of ``coeffs`` in ``block_dct``'s last axis (``codewords.coefficient_positions``)."""
    return torch.from_numpy(coefficient_positions(coeffs))


def flat_blocks(y: torch.Tensor, flat_std: float) -> torch.Tensor:
    """(B, 1, H, W) luma in grey levels -> (B, H/8, W/8) bool: blocks whose standard deviation is under ``flat_std``."""
    blocks = F.pixel_unshuffle(y, BLOCK)
    return blocks.std(dim=1, unbiased=False) < flat_std


def qim_write(
    c: torch.Tensor, bits: torch.Tensor, dither: torch.Tensor, step: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Move coefficients ``c`` onto the lattice of ``bits`` (all broadcastable, floats; bits 0/1, dither in [0, 1),
    step in grey levels) -> the new coefficients. ``alpha`` < 1: distortion-compensated QIM."""
    offset = (dither + 0.5 * bits) * step
    target = torch.round((c - offset) / step) * step + offset
    return c + alpha * (target - c)


def lattice_phase(c: torch.Tensor, dither: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """e = frac(c / step - dither) in [0, 1): where each reading sits between its lattice points."""
    e = c / step - dither
    return e - torch.floor(e)


def concentration(e: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """|mean exp(4 pi i e)| over ``dims``: 1 when every reading sits on a lattice point of either bit, about
    1/sqrt(n) for n readings that carry no code (or were read with the wrong key or grid)."""
    angle = 4 * math.pi * e
    return torch.sqrt(torch.cos(angle).mean(dims) ** 2 + torch.sin(angle).mean(dims) ** 2)


def sigma_from_concentration(r: torch.Tensor) -> torch.Tensor:
    """The reading noise in steps that a concentration ``r`` implies for Gaussian noise (floored)."""
    r = r.clamp(1e-6, 1 - 1e-6)
    return torch.sqrt(-torch.log(r) / (8 * math.pi**2)).clamp(min=MIN_SIGMA)


def qim_llr(e: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Log-likelihood ratios (positive: bit 0) from lattice phases ``e`` and the noise ``sigma`` in steps."""
    d0 = torch.minimum(e, 1 - e)
    return (0.25 - d0) / (2 * sigma**2)


def _log_i0(k: torch.Tensor) -> torch.Tensor:
    """log of the modified Bessel function I0, stable for large arguments."""
    return torch.log(torch.special.i0e(k)) + k


def _kappa(sigma: torch.Tensor) -> torch.Tensor:
    """The von Mises concentration of a bit lattice's reading angle (2 pi e) for noise ``sigma`` in steps."""
    return 1.0 / (2 * math.pi * sigma).pow(2)


def soft_read(
    phases: list[torch.Tensor], prior: torch.Tensor, iterations: int = 2, max_llr: float = 12.0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-slot bit LLRs of every layer, and the posterior that each block carries the code.

    Args:
        phases: per layer (B, h, w, S_l) lattice phases (``lattice_phase``).
        prior: (B, h, w) prior probability that a block carries the code (the reader's flatness test).
    Returns:
        llrs: per layer (B, h, w, S_l), positive for bit 0; active: (B, h, w) posterior.

    A block either carries the code (its readings lie near lattice points, von Mises in 2 pi e around the bit's
    point with a concentration per coefficient) or does not (uniform). The block's posterior multiplies the
    likelihood ratio of all its readings with the prior; each slot's LLR is that of the mixture, so a flat block the
    encoder skipped costs the decoder little, however clean the channel. Noise per coefficient is re-estimated from
    the blocks believed active (``iterations`` rounds of EM).
    """
    b = prior.clamp(0.02, 0.98)
    logit_prior = torch.log(b) - torch.log1p(-b)
    active = b
    kappas: list[torch.Tensor] = []
    for _ in range(iterations):
        kappas, block_llr = [], logit_prior.clone()
        for e in phases:
            w = active[..., None]
            angle = 4 * math.pi * e
            cs = (torch.cos(angle) * w).sum((1, 2)) / w.sum((1, 2)).clamp(min=1e-6)
            sn = (torch.sin(angle) * w).sum((1, 2)) / w.sum((1, 2)).clamp(min=1e-6)
            kappa = _kappa(sigma_from_concentration(torch.sqrt(cs**2 + sn**2)))[:, None, None, :]  # (B, 1, 1, S)
            kappas.append(kappa)
            x = kappa * torch.cos(2 * math.pi * e)
            # log cosh(x) - log I0(kappa): the union-lattice likelihood ratio against uniform, per slot.
            block_llr = block_llr + (torch.logaddexp(x, -x) - math.log(2) - _log_i0(kappa)).sum(-1)
        active = torch.sigmoid(block_llr)
    llrs = []
    for e, kappa in zip(phases, kappas, strict=True):
        a = active[..., None]
        x = kappa * torch.cos(2 * math.pi * e)
        log_uniform = _log_i0(kappa)  # uniform density relative to the von Mises normaliser
        p0 = torch.logaddexp(torch.log(a) + x, torch.log1p(-a) + log_uniform)
        p1 = torch.logaddexp(torch.log(a) - x, torch.log1p(-a) + log_uniform)
        llrs.append((p0 - p1).clamp(-max_llr, max_llr))
    return llrs, active


def block_std(y: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma -> (B, H/8, W/8): each block's standard deviation."""
    return F.pixel_unshuffle(y, BLOCK).std(dim=1, unbiased=False)
