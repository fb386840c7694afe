"""Random synthetic graphics as training secrets: what a watermark often is (a logo, a test pattern, a code).

A model trained on photo crops alone reads photo-like secrets best and loses ground on hard-edged, saturated ones
(``docs/history.md`` measures it). ``GraphicsSampler``
draws such images procedurally, so a fine-tune can mix them in (``train --synthetic-secrets P``):

- a background: a flat colour or a linear gradient between two colours;
- 1 to 5 layers over it, each a shape (rectangle, ellipse, ring, straight band) filled with a flat colour, a
  checkerboard patch, or a full-frame field of concentric or straight colour waves;
- and what a watermark logo has: thin straight lines (1 to 3 px at 256 px) at any angle, and a word of capitals
  and digits in a flat colour.

Colours are pushed towards the saturated corners of the RGB cube half of the time. Every image is 8-bit like real
data. The interface is ``CropSampler``'s: ``batch(n)`` -> (n, C, size, size) float in [0, 1] on ``device``; the
parameters come from a seeded Python RNG, so a run draws the same images on every device.
"""

from __future__ import annotations

import math
import random

import torch

SHAPES = ("rectangle", "ellipse", "ring", "band", "checker", "waves", "lines", "text")
TEXT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# The seed `validate --graphics-secrets` draws with; training draws with its run's seed + 1 (0 + 1 by default).
VALIDATION_SEED = 20261126


class GraphicsSampler:
    """Seeded random graphics: ``batch(n)`` -> (n, C, size, size) float in [0, 1], 8-bit values."""

    def __init__(self, size: int, channels: int = 3, seed: int = 0, device: str | torch.device = "cpu") -> None:
        if size < 8:
            raise ValueError(f"graphics need at least 8 px, got {size}")
        self.size, self.channels, self.device = size, channels, torch.device(device)
        self.rng = random.Random(seed)
        axis = (torch.arange(size, device=self.device, dtype=torch.float32) + 0.5) / size
        self.y, self.x = torch.meshgrid(axis, axis, indexing="ij")  # (size, size) each, in (0, 1)

    def _colour(self) -> torch.Tensor:
        """(C, 1, 1) in [0, 1]; half of the colours saturated (each channel at 0 or 1, slightly jittered)."""
        if self.rng.random() < 0.5:
            values = [min(1.0, max(0.0, round(self.rng.random()) + self.rng.uniform(-0.15, 0.15))) for _ in range(3)]
        else:
            values = [self.rng.random() for _ in range(3)]
        if self.channels == 1:
            values = [sum(values) / 3]
        return torch.tensor(values, device=self.device).view(-1, 1, 1)

    def _background(self) -> torch.Tensor:
        a, b = self._colour(), self._colour()
        if self.rng.random() < 0.3:
            return a.expand(-1, self.size, self.size).clone()
        angle = self.rng.uniform(0, 2 * math.pi)
        t = (math.cos(angle) * (self.x - 0.5) + math.sin(angle) * (self.y - 0.5)) / math.sqrt(0.5) + 0.5
        return a + (b - a) * t.clamp(0, 1)

    def _text(self) -> torch.Tensor:
        """(size, size) in {0, 1}: a word of 2 to 8 capitals and digits, 8-20% of the image high, anywhere."""
        from PIL import Image, ImageDraw, ImageFont

        word = "".join(self.rng.choice(TEXT_CHARS) for _ in range(self.rng.randint(2, 8)))
        font = ImageFont.load_default(size=max(6, round(self.size * self.rng.uniform(0.08, 0.2))))
        canvas = Image.new("L", (self.size, self.size))
        x, y = self.rng.uniform(-0.1, 0.7) * self.size, self.rng.uniform(0.0, 0.85) * self.size
        ImageDraw.Draw(canvas).text((x, y), word, fill=255, font=font)
        return (torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(self.size, self.size) > 127).to(
            self.device, torch.float32
        )

    def _mask(self, shape: str) -> torch.Tensor:
        """(size, size) in {0, 1}: where the layer paints."""
        u = self.rng.uniform
        if shape == "text":
            return self._text()
        cy, cx = u(0.1, 0.9), u(0.1, 0.9)
        if shape == "lines":  # 1 to 4 thin lines, 1-3 px wide at 256 px, each through its own point
            mask = torch.zeros_like(self.x)
            for _ in range(self.rng.randint(1, 4)):
                angle, half_width = u(0, math.pi), u(0.5, 1.5) / 256
                py, px = u(0.1, 0.9), u(0.1, 0.9)
                dist = (math.cos(angle) * (self.x - px) + math.sin(angle) * (self.y - py)).abs()
                mask = torch.maximum(mask, (dist < half_width).float())
            return mask
        if shape in ("rectangle", "checker"):
            h, w = u(0.1, 0.6), u(0.1, 0.6)
            return (((self.y - cy).abs() < h / 2) & ((self.x - cx).abs() < w / 2)).float()
        if shape == "band":
            angle, half_width = u(0, math.pi), u(0.02, 0.12)
            dist = (math.cos(angle) * (self.x - cx) + math.sin(angle) * (self.y - cy)).abs()
            return (dist < half_width).float()
        ry, rx = u(0.08, 0.45), u(0.08, 0.45)
        r = (((self.y - cy) / ry) ** 2 + ((self.x - cx) / rx) ** 2).sqrt()
        if shape == "ring":
            return ((r < 1) & (r > u(0.4, 0.85))).float()
        return (r < 1).float()  # ellipse

    def _fill(self, shape: str) -> torch.Tensor:
        """(C, size, size) or (C, 1, 1): what the layer paints with."""
        if shape == "checker":
            cells = self.rng.choice((4, 6, 8, 12, 16, 24))
            board = ((self.y * cells).floor() + (self.x * cells).floor()) % 2
            a, b = self._colour(), self._colour()
            return a + (b - a) * board
        if shape == "waves":
            period = self.rng.uniform(0.04, 0.35)
            if self.rng.random() < 0.6:  # concentric
                cy, cx = self.rng.uniform(0, 1), self.rng.uniform(0, 1)
                d = ((self.y - cy) ** 2 + (self.x - cx) ** 2).sqrt()
            else:
                angle = self.rng.uniform(0, math.pi)
                d = math.cos(angle) * self.x + math.sin(angle) * self.y
            phases = torch.tensor([self.rng.uniform(0, 2 * math.pi) for _ in range(self.channels)], device=self.device)
            return 0.5 + 0.5 * torch.sin(2 * math.pi * d / period + phases.view(-1, 1, 1))
        return self._colour()

    def one(self) -> torch.Tensor:
        img = self._background()
        for _ in range(self.rng.randint(1, 5)):
            shape = self.rng.choice(SHAPES)
            mask = torch.ones_like(self.x) if shape == "waves" and self.rng.random() < 0.5 else self._mask(shape)
            img = img + (self._fill(shape) - img) * mask
        return (img.clamp(0, 1) * 255).round() / 255

    def batch(self, n: int) -> torch.Tensor:
        return torch.stack([self.one() for _ in range(n)])
