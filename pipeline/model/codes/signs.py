"""Fixed pseudo-random +-1 patterns (the mirror pattern, the codes' pilots), tiled from one seeded tile so
that every image size sees the same signs at the same positions."""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=32)
def tiled_signs(h: int, w: int, tile: int, seed: int) -> np.ndarray:
    """(h, w) float32 of +-1: a (tile, tile) draw of seed ``seed``, repeated and cropped."""
    t = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], dtype=np.float32), (tile, tile))
    return np.tile(t, (-(-h // tile), -(-w // tile)))[:h, :w]


def signs_like(h: int, w: int, tile: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    """``tiled_signs`` as a (1, 1, h, w) tensor on ``like``'s device and dtype."""
    return torch.from_numpy(tiled_signs(h, w, tile, seed)).to(like.device, like.dtype)[None, None]
