"""Pixel folding (space-to-depth) and the one resampling step SRIS-Net's inference graph does on folded tensors.

``fold(x, s)`` puts each s x s pixel block into channels: (B, C, H, W) -> (B, C*s*s, H/s, W/s), channel
``c*s*s + dy*s + dx`` (``F.pixel_unshuffle`` order). The network works on folded images; what it reads and writes
at full resolution is folded once on the way in and unfolded once on the way out.

``upsample_folded(x, s)`` is ``fold(bilinear_upsample(x, s), s)`` computed without the full-resolution image: each
output pixel of a bilinear x s upsampling (``align_corners=False``) mixes the 3x3 neighbourhood of its source
pixel with fixed weights, so it is one grouped 3x3 convolution from C to C*s*s channels on the replicate-padded
input (replicate padding is exactly the edge clamp of ``F.interpolate``). On the CPU engines this is several times
cheaper than interpolating to full size and folding again (tests check it equals that to float rounding).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


def fold(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*s*s, H/s, W/s) (pixel-unshuffle); identity for s = 1."""
    return F.pixel_unshuffle(x, s) if s > 1 else x


def unfold(x: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse of ``fold``."""
    return F.pixel_shuffle(x, s) if s > 1 else x


@functools.lru_cache(maxsize=8)
def _bilinear_phases(s: int) -> np.ndarray:
    """(s*s, 1, 3, 3): output phase (dy, dx) of a bilinear x s upsampling as weights on the 3x3 source window.

    Cached as numpy, not as a tensor: a tensor made while torch.export traces would be a fake one."""
    taps = np.zeros((s, 3))
    for d in range(s):
        offset = (d + 0.5) / s - 0.5  # source coordinate of output phase d, relative to its source pixel
        if offset < 0:
            taps[d, 0], taps[d, 1] = -offset, 1 + offset
        else:
            taps[d, 1], taps[d, 2] = 1 - offset, offset
    return np.einsum("ai,bj->abij", taps, taps).reshape(s * s, 1, 3, 3).astype(np.float32)


def upsample_folded(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C*s*s, h, w) == ``fold(F.interpolate(x, scale_factor=s, mode="bilinear"), s)``."""
    c = x.shape[1]
    weight = torch.from_numpy(_bilinear_phases(s)).to(x.device, x.dtype).repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=c)
