"""Training data: random crops of a folder of photos (or of WebDataset shards), split by whole photo.

Photos are decoded once into memory (``pipeline.io.photos.load_photos``: longest side capped, EXIF orientation
applied), so every batch is a cheap random crop: a random square window (between the crop size and the photo's
shorter side, log-uniform, so the net sees both fine detail and downscaled whole scenes), resized to the crop size
with antialiasing, randomly flipped.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F


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
