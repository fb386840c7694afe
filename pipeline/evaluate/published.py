"""Where published images go: the real codecs, resizes and crops a stego meets once it is posted.

Every condition takes and returns (B, C, H, W) float images in [0, 1] of the same shape, and goes through real
8-bit code (``pipeline.core.distortions``: Pillow's libjpeg and libwebp, OpenCV's resize): evaluation only, not
differentiable. ``PUBLISHED`` holds them under their report names; ``PUBLISHED_BAR`` is the published-image bar on
the secret PSNR (dB) after each.

A shift drops rows and columns, so the revealed secret can only be compared with the original on the region both
share: ``overlap_pair`` chooses the crops (see there), and every figure of a shift is measured on them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pipeline.core.distortions import crop, jpeg, resize, shift, webp
from pipeline.core.metrics import psnr

SHIFTS = tuple(range(1, 8))


def _alignments(revealed: torch.Tensor, secret: torch.Tensor, k: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    h, w = secret.shape[-2:]
    return {
        # The secret came out where the content sits in the shifted stego: revealed pixel (i, j) shows secret pixel
        # (i + k, j + k). The last k rows/columns of the revealed image lie on the padding and are left out.
        "with-stego": (revealed[..., : h - k, : w - k], secret[..., k:, k:]),
        # The model re-aligned the secret to the original frame: revealed pixel (i, j) shows secret pixel (i, j).
        # The first k rows/columns were cropped away before publishing (nothing to reveal them from) and are left
        # out; the padded border maps outside the original frame, so the overlap is [k:, k:] on both sides.
        "original": (revealed[..., k:, k:], secret[..., k:, k:]),
    }


def overlap_pair(revealed: torch.Tensor, secret: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The crops of ``revealed`` and ``secret`` (B, C, H, W, 0-255) to compare after ``shift(., k)``, and the
    alignment they follow: ``"with-stego"`` (the secret revealed shifted as the stego was: ``revealed[:H-k, :W-k]``
    against ``secret[k:, k:]``) or ``"original"`` (re-aligned to the original frame: ``revealed[k:, k:]`` against
    ``secret[k:, k:]``). Both crops are (H - k) x (W - k), the region the original and the shifted stego share, so
    neither alignment gains from a larger region; the one with the higher mean PSNR over the batch is the one
    reported (a model does one or the other for every image, so the choice is made once for the whole set)."""
    if k == 0:
        return revealed, secret, "original"
    pairs = _alignments(revealed, secret, k)
    scores = {name: psnr(a, b).mean().item() for name, (a, b) in pairs.items()}
    best = max(scores, key=lambda n: scores[n])  # ties (both +inf) keep "with-stego"
    return (*pairs[best], best)


def overlap_psnr(revealed: torch.Tensor, secret: torch.Tensor, k: int) -> tuple[torch.Tensor, str]:
    """Per-image PSNR (B,) of the revealed secret on the overlap after ``shift(., k)``, the better of the two
    alignments of ``overlap_pair``, and that alignment's name."""
    a, b, name = overlap_pair(revealed, secret, k)
    return psnr(a, b), name


PUBLISHED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jpeg90": lambda x: jpeg(x, 90),
    "jpeg75": lambda x: jpeg(x, 75),
    "jpeg50": lambda x: jpeg(x, 50),
    "webp80": lambda x: webp(x, 80),
    "resize0.5": lambda x: resize(x, 0.5),
    "resize0.75": lambda x: resize(x, 0.75),
    **{f"shift{k}": (lambda x, k=k: shift(x, k)) for k in SHIFTS},
    "crop10": lambda x: crop(x, 0.9),
}
"""The published-image conditions, by name, in report order. ``crop10`` keeps 90% of each side at a seeded random
offset and is resized back: the secret is compared over the whole frame (a digital layer gives all of it back)."""

FAMILY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jpeg95": lambda x: jpeg(x, 95),
    "jpeg85": lambda x: jpeg(x, 85),
    "jpeg60": lambda x: jpeg(x, 60),
    "jpeg40": lambda x: jpeg(x, 40),
    "webp90": lambda x: webp(x, 90),
    "webp70": lambda x: webp(x, 70),
    "resize0.9": lambda x: resize(x, 0.9),
    "resize0.6": lambda x: resize(x, 0.6),
    "shift12": lambda x: shift(x, 12),
    "shift24": lambda x: shift(x, 24),
    "crop5": lambda x: crop(x, 0.95, seed=1),
    "crop15": lambda x: crop(x, 0.85, seed=2),
}
"""Conditions of the same kinds that no bar lists (other qualities, scales, offsets): ``validate --family``."""

SHIFT_OF: dict[str, int] = {f"shift{k}": k for k in (*SHIFTS, 12, 24)}
"""The conditions measured on the overlap (``overlap_pair``) and their shift."""

PUBLISHED_BAR: dict[str, float] = {
    "jpeg90": 30.0,
    "jpeg75": 28.0,
    "jpeg50": 24.0,
    "webp80": 25.0,
    "resize0.5": 22.0,
    "resize0.75": 26.0,
    **{f"shift{k}": 25.0 for k in SHIFTS},
    "crop10": 24.0,
}
"""The published-image bar: the secret PSNR (dB) each published-image condition needs (the digital layer's)."""
