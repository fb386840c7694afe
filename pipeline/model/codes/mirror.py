"""Mirror handling: a fixed faint +-1 pattern that tells reveal whether a stego was flipped left-right.

A convolutional reveal net reads the hidden signal where it was written, so a mirror scrambles it; the secret must
still come back in its original orientation. With ``ModelConfig.mirror == "pattern"`` embed adds a known template
(the way watermarking systems carry a synchronisation pattern) and reveal correlates against it:

    embed:  stego = cover + residual + a * T            T: +-1 on 2x2-pixel blocks, the same in every channel
    reveal: c = <highpass(mean_c(stego)), T - mirror(T)>;  c < 0  ->  un-mirror the stego, then reveal

T and its mirror are nearly orthogonal random patterns, so the correlation's sign says which one the image holds; the
high-pass removes the cover's smooth content, the strongest interference. With ``mirror == "pilot"`` (the shipped
model) the thumbnail code's own pilot decides instead (``ThumbnailReader.mirrored``) and no pattern is added; this
module then only supplies the un-mirroring. Everything is tensor arithmetic on constants, so it exports.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model.codes.signs import tiled_signs

BLOCK = 2
# The pattern is tiled from one fixed 128x128-block (256x256 px) tile, so every image size sees the same pattern at
# the same pixel positions (a 128 px training crop holds the top-left quarter of what a 256 px image holds).
TILE_BLOCKS = 128
SEED = 0x5215


@functools.lru_cache(maxsize=16)
def _template_np(h: int, w: int) -> np.ndarray:
    blocks = tiled_signs(-(-h // BLOCK), -(-w // BLOCK), TILE_BLOCKS, SEED)
    return np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=np.float32))[:h, :w]


def template(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """The +-1 pattern (1, 1, h, w) on ``like``'s device and dtype."""
    return torch.from_numpy(_template_np(h, w)).to(like.device, like.dtype)[None, None]


def add_template(x: torch.Tensor, amplitude255: float) -> torch.Tensor:
    """(B, C, H, W) -> the same plus ``amplitude255 / 255`` times the pattern in every channel."""
    return x + template(*x.shape[-2:], x) * (amplitude255 / 255.0)


def _highpass3(g: torch.Tensor) -> torch.Tensor:
    return g - F.avg_pool2d(F.pad(g, (1, 1, 1, 1), mode="reflect"), 3, stride=1)


def _highpass(x: torch.Tensor) -> torch.Tensor:
    return _highpass3(_highpass3(x.mean(dim=1, keepdim=True)))


def mirror_score(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,): > 0 when ``x`` holds the pattern as embedded, < 0 when it holds its mirror.

    Normalised by the high-pass energy, so it reads as a correlation coefficient (about +-0.01..0.1 on photos).
    """
    t = template(*x.shape[-2:], x)
    hp = _highpass(x)
    c = (hp * (t - t.flip(-1))).sum(dim=(1, 2, 3))
    return c / (hp.square().sum(dim=(1, 2, 3)).sqrt() * (t.numel() ** 0.5) + 1e-12)


def _box3(n: int) -> np.ndarray:
    """(n, n): the 1-D 3-tap mean with reflect padding, as a matrix (``_highpass3``'s smoothing along one axis)."""
    m = np.zeros((n, n))
    for i in range(n):
        for j in (i - 1, i, i + 1):
            m[i, abs(j) if j < n else 2 * n - 2 - j] += 1 / 3
    return m


@functools.lru_cache(maxsize=16)
def _direction_np(c: int, h: int, w: int) -> np.ndarray:
    """``mirror_score``'s numerator is linear in the image: <highpass(x), T - mirror(T)> = <x, D>. D (c, h, w).

    D = mean_c^T H^T H^T (T - mirror(T)) with H = I - Mh . Mw^T (the separable box of ``_highpass3``); numpy, not
    autograd, so that it also works while torch.export traces the model."""
    mh, mw = _box3(h), _box3(w)
    t = _template_np(h, w).astype(np.float64)
    y = t - t[:, ::-1]
    for _ in range(2):
        y = y - mh.T @ y @ mw
    return np.broadcast_to(y / c, (c, h, w)).astype(np.float32)


def mirror_direction(c: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """D (1, c, h, w): ``<x, D>`` has the sign of ``mirror_score(x)`` (one multiply-add pass instead of two
    high-pass filters, which is what the reveal engines run)."""
    return torch.from_numpy(_direction_np(c, h, w)).to(like.device, like.dtype)[None]


def is_mirrored(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,) bool: the image holds the mirrored pattern (``mirror_score(x) < 0``)."""
    return (x * mirror_direction(*x.shape[1:], x)).sum(dim=(1, 2, 3)) < 0


def mirror_image(x: torch.Tensor) -> torch.Tensor:
    """``x.flip(-1)`` as a gather with reversed indices: exported, flip is a negative-step Slice that OpenVINO runs
    with its reference kernel (5% of the whole reveal graph on the CPU); the gather has a fast one. Same values."""
    return x.index_select(-1, torch.arange(x.shape[-1] - 1, -1, -1, device=x.device))


def unmirror(x: torch.Tensor, mirrored: torch.Tensor | None = None) -> torch.Tensor:
    """Un-mirror the images of the batch that hold the mirrored pattern, or those flagged in ``mirrored`` (B,) bool
    when another signal decided (a per-image select, exportable)."""
    flag = (is_mirrored(x) if mirrored is None else mirrored).reshape(-1, 1, 1, 1)
    return torch.where(flag, mirror_image(x), x)


class MirrorDecision:
    """The mirror handling of a hiding model (``ModelConfig.codes.mirror``): ``mark`` what embed adds to a raw stego,
    ``unmirror`` what reveal does first.

    ``decision``: ``pattern`` adds the template at ``pattern_amplitude`` grey levels and un-mirrors the images that
    hold its mirror; ``pilot`` adds nothing and un-mirrors the images ``mirrored`` (B, C, N, N) -> (B,) bool flags
    (the thumbnail code's pilot, ``ThumbnailReader.mirrored``); ``none`` does neither.
    """

    def __init__(
        self,
        decision: str,
        pattern_amplitude: float = 1.0,
        mirrored: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if decision == "pilot" and mirrored is None:
            raise ValueError("the pilot's mirror decision reads the thumbnail code: give its reader's `mirrored`")
        self.decision, self.pattern_amplitude, self.mirrored = decision, pattern_amplitude, mirrored

    def mark(self, stego: torch.Tensor) -> torch.Tensor:
        """A raw stego (B, C, N, N) with the mirror pattern added (``pattern`` only)."""
        return add_template(stego, self.pattern_amplitude) if self.decision == "pattern" else stego

    def unmirror(self, stego: torch.Tensor) -> torch.Tensor:
        """The images of ``stego`` (B, C, N, N) that were mirrored after embedding, mirrored back."""
        if self.decision == "pattern":
            return unmirror(stego)
        if self.decision == "pilot":
            return unmirror(stego, self.mirrored(stego))
        return stego
