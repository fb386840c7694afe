"""Where published images go (issue 23): the real codecs, resizes and crops a stego meets once it is posted.

Every condition takes and returns (B, C, H, W) float images in [0, 1] of the same shape, and goes through real
8-bit code (Pillow's libjpeg and libwebp, OpenCV's resize): evaluation only, not differentiable. ``PUBLISHED`` holds
them under their report names; ``PUBLISHED_BAR`` is issue 23's bar on the secret PSNR (dB) after each.

A shift drops rows and columns, so the revealed secret can only be compared with the original on the region both
share: ``overlap_pair`` chooses the crops (see there), and every figure of a shift is measured on them.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.evaluate.metrics import psnr
from pipeline.train.attacks import jpeg_real

SHIFTS = tuple(range(1, 8))


def _u8_images(x: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) float in [0, 1] -> B uint8 arrays (H, W, C): the image as saved before it is published."""
    return [a.copy() for a in (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()]


def _from_u8(arrs: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    out = torch.stack([torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in arrs])
    return out.to(like.device, like.dtype) / 255.0


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Pillow JPEG at ``quality`` with its default 4:2:0 chroma subsampling, decoded back (``attacks.jpeg_real``)."""
    return jpeg_real(x, quality)


def webp(x: torch.Tensor, quality: int = 80) -> torch.Tensor:
    """Pillow WebP, lossy at ``quality`` (libwebp's defaults otherwise), decoded back. One-channel images are saved
    as RGB (WebP has no grey mode) and read back as grey."""
    from PIL import Image

    out = []
    for arr in _u8_images(x):
        grey = arr.shape[2] == 1
        img = Image.fromarray(arr[..., 0], "L") if grey else Image.fromarray(arr, "RGB")
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="WEBP", quality=quality, lossless=False)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if grey else "RGB"))
        out.append(dec[..., None] if grey else dec)
    return _from_u8(out, x)


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """OpenCV ``INTER_AREA`` down to ``factor`` of the size (rounded, at least 1 px; the published image, 8-bit),
    then ``INTER_LINEAR`` back up to the original size (what the receiver does before revealing), 8-bit."""
    import cv2

    h, w = x.shape[-2:]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))  # cv2's dsize is (width, height)
    out = []
    for arr in _u8_images(x):
        down = cv2.resize(arr, small, interpolation=cv2.INTER_AREA)
        up = cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(up.reshape(h, w, arr.shape[2]))  # cv2 drops a single channel's axis
    return _from_u8(out, x)


def shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """Drop ``k`` rows at the top and ``k`` columns at the left (a crop), then reflect-pad (reflect-101, as
    ``torch``'s and OpenCV's default reflection) ``k`` rows at the bottom and ``k`` columns at the right back to
    the original size: ``shift(x, k)[..., :H-k, :W-k] == x[..., k:, k:]``, the content moved up-left by ``k``."""
    if k == 0:
        return x
    return F.pad(x[..., k:, k:], (0, k, 0, k), mode="reflect")


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
}
"""Issue 23's published-image conditions, by name, in report order."""

SHIFT_OF: dict[str, int] = {f"shift{k}": k for k in SHIFTS}
"""The conditions measured on the overlap (``overlap_pair``) and their shift."""

PUBLISHED_BAR: dict[str, float] = {
    "jpeg90": 25.0,
    "jpeg75": 23.0,
    "jpeg50": 20.0,
    "webp80": 23.0,
    "resize0.5": 24.0,
    "resize0.75": 26.0,
    **{f"shift{k}": 24.0 for k in SHIFTS},
}
"""Issue 23's "Must show": the secret PSNR (dB) each published-image condition needs."""
