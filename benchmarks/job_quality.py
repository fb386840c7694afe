#!/usr/bin/env python
"""How much of the secret survives the batch job's path at a given image size, against the network's own size.

    python benchmarks/job_quality.py --data ../shared/photos [--checkpoint PATH] [--megapixels 1] [--out DIR]

The held-out photos (the training split by name) are scaled to about ``--megapixels`` (aspect kept); photo i hides
photo i+1 as the validation does. Each pair goes through the job's own per-batch code (``embed_batch``: network at
256 px, residual carried to full size, 8-bit; ``verify_batch``: the stego resized back and revealed) and, for the
mirror, the full-size stego is flipped and revealed as ``extract`` would (resized to the network's size, or read
by the digital layer as extract reads it). For reference the same pairs are
also run at 256 px directly (what ``validate`` measures). Prints a table; writes OUT/job_quality.parquet
(``job_quality-smooth.parquet`` with ``--upsample smooth``).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np

from pipeline.core.metrics import ssim_u8
from pipeline.io.decode import DecodedImage
from pipeline.jobs.batch import (
    Sample,
    _received,
    embed_batch,
    on_grid,
    per_image_metrics,
    quantize,
    to_nchw,
    verify_batch,
)
from pipeline.jobs.resample import UPSAMPLE, resize_bilinear, to_network_size


def held_out_photos(data: str) -> tuple[list[str], list[np.ndarray]]:
    """The held-out photos of ``data`` (the training split by name) at full size: names and (H, W, 3) uint8."""
    from pipeline.io.photos import load_photos

    _, val_imgs, _, val_names = load_photos(data, 3, 0.2, max_side=8192)  # full size: the job sees it
    return val_names, [img.permute(1, 2, 0).contiguous().numpy() for img in val_imgs]  # uint8 already


def scaled(img: np.ndarray, megapixels: float) -> np.ndarray:
    """(H, W, 3) uint8 -> about ``megapixels`` MP, aspect kept (antialiased bilinear)."""
    import torch
    import torch.nn.functional as F

    h, w, _ = img.shape
    f = math.sqrt(megapixels * 1e6 / (h * w))
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=(round(h * f), round(w * f)), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


@click.command()
@click.option("--data", required=True, help="Folder of photos (the training source: its held-out split is used).")
@click.option("--checkpoint", help="Model checkpoint [default: the shipped model].")
@click.option("--megapixels", default=1.0, show_default=True, help="Size the photos are scaled to.")
@click.option("--size", default=256, show_default=True, help="Network size N.")
@click.option(
    "--upsample", type=click.Choice(UPSAMPLE), default="exact", show_default=True, help="As embed's --upsample."
)
@click.option("--out", default="benchmarks/results", show_default=True, help="Folder for job_quality.parquet.")
def main(data: str, checkpoint: str | None, megapixels: float, size: int, upsample: str, out: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.runtime import load_engine

    engine = load_engine("torch", checkpoint, size, "cpu")
    val_names, photos = held_out_photos(data)
    rows = []
    for i, (name, photo) in enumerate(zip(val_names, photos, strict=True)):
        secret_n = resize_bilinear(photos[(i + 1) % len(photos)], size)[None]  # (K=1, N, N, 3)
        row = {"cover": name}
        for label, cover in (("network size", to_network_size(photo, size)), ("job", scaled(photo, megapixels))):
            s = Sample(name, {"status": None}, image=DecodedImage(rgb=cover, alpha=None, mode="RGB"))
            embed_batch(engine, [s], size, secret_n, upsample)
            verify_batch(engine, [s], size)
            row[f"psnr_secret {label}"] = s.row["psnr_secret"]
            row[f"psnr_cover {label}"] = s.row["psnr_cover"]
            row[f"ssim_cover {label}"] = float(ssim_u8(s.result[None], cover[None])[0])  # at the image's own size
            flipped = np.ascontiguousarray(s.result[:, ::-1])
            if engine.digital:  # extract reads the received image itself; no level: no secret
                (reading,) = engine.stages.read_digital(
                    _received(flipped, size), on_grid=to_nchw(on_grid([flipped], size)[0])
                )
                revealed = reading.secrets[0] if reading.secrets is not None else np.zeros_like(secret_n[0])
            else:
                mirrored = to_network_size(flipped, size)
                revealed = quantize(engine.reveal(to_nchw([mirrored]))[0].transpose(1, 2, 0))
            row[f"psnr_secret mirrored {label}"] = float(per_image_metrics(revealed[None], secret_n)[0][0])
            row[f"megapixels {label}"] = cover.shape[0] * cover.shape[1] / 1e6
        rows.append(row)
    table = pa.Table.from_pylist(rows)
    Path(out).mkdir(parents=True, exist_ok=True)
    name = "job_quality.parquet" if upsample == "exact" else f"job_quality-{upsample}.parquet"
    pq.write_table(table, Path(out) / name)
    cols = [c for c in table.column_names if c.startswith(("psnr", "ssim", "megapixels"))]
    click.echo(
        f"{len(rows)} held-out photos, model {engine.info.model_sha256[:12]}, --upsample {upsample}; mean over photos:"
    )
    for c in cols:
        v = np.mean(table.column(c).to_numpy())
        click.echo(f"  {c:36s} {v:9.4f}" if c.startswith("ssim") else f"  {c:36s} {v:7.2f}")


if __name__ == "__main__":
    main()
