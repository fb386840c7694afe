"""Photos as the model sees them: decoded (EXIF orientation applied, longest side capped), split into training and
held-out photos by a stable hash of the name, centre squares or random square crops at N, and the pairing in which
photo i hides photos i+1 .. i+K. Training, validation, evaluation and the studies all prepare photos this way.

Reading a photo set from a folder or shards is ``pipeline.io.photos``.
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps


def decode_photo(data: bytes, channels: int = 3, max_side: int = 1024) -> torch.Tensor:
    """Encoded bytes -> (C, H, W) uint8 tensor, EXIF-rotated, longest side at most ``max_side``."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    img = img.convert("L" if channels == 1 else "RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    arr = np.asarray(img)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def is_validation(name: str, fraction: float) -> bool:
    """Stable split by photo name: the same photo is always on the same side, whatever else is in the folder."""
    h = int.from_bytes(hashlib.sha1(Path(name).name.encode()).digest()[:4], "big")
    return h < fraction * 2**32


def square_crops(
    photos: list[torch.Tensor], per_photo: int, size: int, seed: int, centre: bool = False
) -> torch.Tensor:
    """(N, C, size, size) float in [0, 1], 8-bit: ``per_photo`` random square crops of every photo (sides from
    ``size`` px to its shorter side, resized to ``size``), each photo's centre square first with ``centre``. The
    evaluation scripts' shared sampler: the same seed gives the same crops in every script."""
    rng = random.Random(seed)
    out = []
    for p in photos:
        if centre:
            out.append(center_square(p, size))
        h, w = p.shape[-2:]
        for _ in range(per_photo):
            side = rng.randint(size, min(h, w)) if min(h, w) > size else min(h, w)
            y, x = rng.randint(0, h - side), rng.randint(0, w - side)
            out.append(center_square(p[:, y : y + side, x : x + side], size))
    return torch.stack(out)


def center_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) uint8 -> (C, size, size) float in [0, 1]: shorter side resized to ``size``, centre crop."""
    h, w = img.shape[-2:]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    patch = img[:, y : y + s, x : x + s].float()[None] / 255.0
    patch = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ((patch.clamp(0, 1) * 255).round() / 255.0)[0]


def validation_pairs(photos: list[torch.Tensor], size: int, num_secrets: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (covers, secrets) from held-out photos: photo i hides photos i+1 .. i+K (cyclically)."""
    imgs = torch.stack([center_square(p, size) for p in photos])
    return imgs, cyclic_secrets(imgs, num_secrets)


def cyclic_secrets(covers: torch.Tensor, num_secrets: int) -> torch.Tensor:
    """Photo i hides photos i+1 .. i+K (cyclically): covers (N, C, H, W) -> secrets (N, K*C, H, W)."""
    n = len(covers)
    return torch.cat([covers[[(i + k + 1) % n for i in range(n)]] for k in range(num_secrets)], dim=1)
