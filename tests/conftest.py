"""Shared fixtures: small real models saved as real checkpoints, and small real photos made on the fly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

# Two cores: keep each test process to one torch thread so tests do not fight each other (or a training run).
torch.set_num_threads(1)
# The secrets' coding is kept between jobs (``digital.source.SecretCache``): in a folder of this test run's own, not
# in the user's cache, so that every run codes afresh once. Subprocess jobs inherit it.
os.environ.setdefault("SRIS_SECRET_CACHE", tempfile.mkdtemp(prefix="sris-secret-cache-"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``tiny`` SRIS-Net (seeded), saved in the project's checkpoint format."""
    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(get_config("tiny"))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt", meta={"note": "untrained test model"})


def flat_config(preset: str, **overrides: object) -> dict:
    """A preset's config as a flat dict in the short names (the version-1/2 vocabulary), without ``version`` and
    ``legacy``: the raw material of the old-checkpoint tests."""
    from pipeline.model.config import SHORT_NAMES, get_config

    cfg = get_config(preset, **overrides)
    out = {}
    for name, path in SHORT_NAMES.items():
        # version 2 kept the baseline depths in ``extra``; the digital layer came with version 4
        if name not in ("legacy", "hinet_blocks", "unet_depth", "digital"):
            value = cfg
            for part in path.split("."):
                value = getattr(value, part)
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def synthetic_photo(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A photo-like uint8 image (H, W, C): smooth gradients, a few shapes and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, channels), np.float32)
    for c in range(channels):
        fy, fx, ph = rng.uniform(0.5, 4, 3)
        img[..., c] = 120 + 80 * np.sin(fy * yy / h * np.pi + ph) * np.cos(fx * xx / w * np.pi)
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(min(h, w) // 10 + 1, min(h, w) // 3 + 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, channels)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def photo_factory():
    return synthetic_photo
