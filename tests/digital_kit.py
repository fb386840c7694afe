"""Shared fixtures of the digital-layer tests: real photos from the package's sample shards, at the grid size."""

from __future__ import annotations

import functools
import io
import tarfile
from importlib import resources

import numpy as np
import torch
from PIL import Image

SIZE = 256


@functools.lru_cache(maxsize=1)
def sample_photos() -> tuple[np.ndarray, ...]:
    """The colour photos of the sample shards, centre-cropped and resized to 256 x 256: (256, 256, 3) uint8."""
    root = resources.files("pipeline") / "samples" / "shards"
    out = []
    for shard in ("shard-000000.tar", "shard-000001.tar"):
        with tarfile.open(str(root / shard)) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".jpg") and "gray" not in m.name:
                    img = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
                    s = min(img.size)
                    box = ((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2, (img.height + s) // 2)
                    out.append(np.asarray(img.crop(box).resize((SIZE, SIZE), Image.LANCZOS)))
    return tuple(out)


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255


def as_u8(x: torch.Tensor) -> torch.Tensor:
    """A float image rounded to 8 bits, as saved."""
    return (x.clamp(0, 1) * 255).round() / 255


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    arr = (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return as_tensor(np.asarray(Image.open(buf).convert("RGB")))
