#!/usr/bin/env python
"""A WebDataset shard of N x N PNG crops of the held-out photos, for timing the embed job on real images.

    python benchmarks/make_shard.py --data PHOTOS --out /tmp/bench256 [--images 288] [--size 256] [--seed 0]

The held-out photos (the training split by name, as ``validate`` uses) are each scaled so that their short side is
between N and 3N (drawn per crop) and cropped at a random N x N window; crops are drawn round the photos until
``--images`` are made. Writes ``OUT/bench-000000.tar`` (members ``000000.png`` ...), lossless, so that the job's
decode is PNG's and the images are the photos' own pixels.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import click
import numpy as np
from PIL import Image


def photo_split(data: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training and held-out photos of ``data`` (``validate``'s split by name), each (H, W, 3) uint8."""
    from pipeline.io.photos import load_photos

    train, held_out, _, _ = load_photos(data, 3, 0.2, max_side=8192)
    return [t.permute(1, 2, 0).contiguous().numpy() for t in train], [
        t.permute(1, 2, 0).contiguous().numpy() for t in held_out
    ]


def secret_photo(photo: np.ndarray, size: int = 256) -> np.ndarray:
    """A photo's centre square at ``size`` px (Lanczos): the secret the timing and the studies hide."""
    h, w = photo.shape[:2]
    s = min(h, w)
    square = np.ascontiguousarray(photo[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2])
    return np.asarray(Image.fromarray(square).resize((size, size), Image.LANCZOS))


def write_shard(path: Path, images: list[np.ndarray], png_level: int = 6) -> Path:
    """``images`` as PNG members ``000000.png`` ... of a WebDataset shard at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for i, img in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG", compress_level=png_level)
            info = tarfile.TarInfo(f"{i:06d}.png")
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)
    return path


def crops(photos: list[np.ndarray], n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` crops (size, size, 3) uint8 of ``photos`` (each (H, W, 3) uint8), cycling over the photos."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)])
        short = rng.uniform(size, 3 * size)
        f = short / min(img.size)
        w, h = max(size, round(img.width * f)), max(size, round(img.height * f))
        scaled = img.resize((w, h), Image.LANCZOS)
        x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        out.append(np.asarray(scaled.crop((x, y, x + size, y + size))))
    return out


@click.command()
@click.option("--data", required=True, help="Folder of photos (its held-out split is used).")
@click.option("--out", required=True, help="Output folder for bench-000000.tar.")
@click.option("--images", default=288, show_default=True, type=click.IntRange(1))
@click.option("--size", default=256, show_default=True, type=click.IntRange(16))
@click.option("--seed", default=0, show_default=True)
def main(data: str, out: str, images: int, size: int, seed: int) -> None:
    _, photos = photo_split(data)
    path = write_shard(Path(out) / "bench-000000.tar", crops(photos, images, size, seed))
    click.echo(f"wrote {images} crops of {len(photos)} held-out photos to {path}")


if __name__ == "__main__":
    main()
