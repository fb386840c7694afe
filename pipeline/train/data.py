"""Training data: random crops of a folder of photos (or of WebDataset shards), split by whole photo.

Photos are decoded once into memory (longest side capped, EXIF orientation applied), so every batch is a cheap
random crop: a random square window (between the crop size and the photo's shorter side, log-uniform, so the net
sees both fine detail and downscaled whole scenes), resized to the crop size with antialiasing, randomly flipped.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


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


def list_photos(source: str) -> list[tuple[str, bytes]]:
    """(name, encoded bytes) for every image in a folder, or every image member of the WebDataset shards there."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return [(p.name, p.read_bytes()) for p in files]
    from pipeline.io.shards import iter_image_members

    return [(key, data) for key, data in iter_image_members(source)]


def load_photos(
    source: str, channels: int = 3, val_fraction: float = 0.2, max_side: int = 1024
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str], list[str]]:
    """Decode all photos; returns (train images, validation images, train names, validation names)."""
    train, val, train_names, val_names = [], [], [], []
    for name, data in list_photos(source):
        try:
            img = decode_photo(data, channels, max_side)
        except Exception as exc:  # a broken photo must not stop training; say which one
            print(f"skipping {name}: {exc}")
            continue
        if is_validation(name, val_fraction):
            val.append(img)
            val_names.append(name)
        else:
            train.append(img)
            train_names.append(name)
    if not train:
        raise ValueError(f"no training photos found in {source}")
    return train, val, train_names, val_names


class CropSampler:
    """Random crops of in-memory photos: ``batch(n)`` -> (n, C, crop, crop) float in [0, 1]."""

    def __init__(
        self, photos: list[torch.Tensor], crop: int, seed: int = 0, device: str | torch.device = "cpu"
    ) -> None:
        # On a GPU the photos live there (uint8) and every crop and resize runs there, so the CPU only draws the
        # windows (from the same Python RNG on every device) and never decodes or resizes in the step's path.
        self.photos = [p.to(device) for p in photos if min(p.shape[-2:]) >= crop // 2]
        if not self.photos:
            raise ValueError(f"no photo is large enough for {crop} px crops")
        self.crop = crop
        self.rng = random.Random(seed)

    def one(self) -> torch.Tensor:
        img = self.rng.choice(self.photos)
        h, w = img.shape[-2:]
        short = min(h, w)
        lo, hi = math.log(min(self.crop, short)), math.log(short)
        side = round(math.exp(self.rng.uniform(lo, hi)))
        y, x = self.rng.randint(0, h - side), self.rng.randint(0, w - side)
        patch = img[:, y : y + side, x : x + side].float()[None] / 255.0
        if side != self.crop:
            size = (self.crop, self.crop)
            patch = F.interpolate(patch, size=size, mode="bilinear", antialias=True, align_corners=False)
            patch = (patch.clamp(0, 1) * 255).round() / 255.0  # training data is 8-bit like real data
        if self.rng.random() < 0.5:
            patch = patch.flip(-1)
        if self.rng.random() < 0.5:
            patch = patch.flip(-2)
        return patch[0]

    def batch(self, n: int) -> torch.Tensor:
        return torch.stack([self.one() for _ in range(n)])


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
    n = len(imgs)
    secrets = torch.cat([imgs[[(i + k + 1) % n for i in range(n)]] for k in range(num_secrets)], dim=1)
    return imgs, secrets
