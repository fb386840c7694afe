"""How a stego stored at the grid size should be rounded to 8 bits: plain rounding against the luma-keeping kind.

The digital layer writes luma, the same change on R, G and B, so the three channels of a pixel share a fractional
part and plain rounding moves the pixel's luma by up to half a grey level; the top level's steps of 3 grey levels
lose about 1% of their readings to it, and every stego so stored needs an LDPC decode to verify. For 96 crops of the
held-out photos (``benchmarks/make_shard.py``'s first 96 at 256 px, seed 0), the shipped model writes the layer
(hiding the first training photo), the stego is clipped keeping luma, and then rounded: plainly, or with
``round_keeping_luma`` at several tolerances. Counted: each level's hard readings that differ from what was written
(in the blocks that carry the code), the images with any, and the cover PSNR. Writes
``docs/evaluation/luma_rounding.json`` and ``.png``.

    python research/luma_rounding.py --data PHOTOS
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from pipeline.model import load_model
from pipeline.model.digital import cpu_path
from pipeline.model.digital import modulation as mod

ROOT = Path(__file__).resolve().parents[1]
TOLERANCES = (None, 0.0, 0.1, 0.2, 0.3)  # None: plain rounding


def make_shard():
    """``benchmarks/make_shard.py``: the benchmark's crops and secret."""
    spec = importlib.util.spec_from_file_location("make_shard", ROOT / "benchmarks" / "make_shard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flipped_readings(layer, prepared, cover: torch.Tensor, stored: torch.Tensor) -> list[np.ndarray]:
    """Per level, (B,) counts of hard readings of ``stored`` (B, 3, N, N) grey levels unlike the bits written."""
    c = mod.block_dct(mod.luma(stored))
    active = layer.active_blocks(cover)[..., None]
    g, b = layer.grid_blocks, len(cover)
    out = []
    for i, lv in enumerate(layer.config.levels):
        e = mod.lattice_phase(c[..., mod.coefficient_index(lv.coeffs)], layer.dither(i), layer.steps(i))
        read = ((e > 0.25) & (e < 0.75)).to(torch.uint8)
        # The written codewords, as the layer lays them on its slots (one codeword for every image here).
        want = torch.from_numpy(layer.slot_bits(prepared, i, [None] * b)).view(b, g, g, len(lv.coeffs))
        out.append(((read != want) & active).flatten(1).sum(1).numpy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--out", default=str(ROOT / "docs" / "evaluation" / "luma_rounding"))
    args = ap.parse_args()

    model = load_model(None)
    layer = model.digital.layer(None)
    shard = make_shard()
    train, held_out = shard.photo_split(args.data)  # the benchmark shard's first crops, its secret
    prepared = layer.prepare([shard.secret_photo(train[0])], None)
    crops = np.stack(shard.crops(held_out, 288, 256, 0)[: args.images])
    covers = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        written = mod.clip_keeping_luma(layer.embed(covers, covers, prepared, None)) * 255  # (B, 3, N, N) floats
    rows = []
    for tol in TOLERANCES:
        hwc = written.permute(0, 2, 3, 1)
        stored = hwc.round() if tol is None else torch.from_numpy(cpu_path.round_keeping_luma(hwc.numpy(), tol)).float()
        stored = stored.permute(0, 3, 1, 2)
        flips = flipped_readings(layer, prepared, covers, stored)
        mse = ((stored - covers * 255) ** 2).mean((1, 2, 3))
        rows.append(
            {
                "rounding": "plain" if tol is None else f"luma, tolerance {tol}",
                "flipped": {lv.name: int(f.sum()) for lv, f in zip(layer.config.levels, flips, strict=True)},
                "images_with_flips": {
                    lv.name: int((f > 0).sum()) for lv, f in zip(layer.config.levels, flips, strict=True)
                },
                "psnr_cover": float((10 * torch.log10(255**2 / mse)).mean()),
            }
        )
        print(
            f"{rows[-1]['rounding']:24} flipped {rows[-1]['flipped']}  images {rows[-1]['images_with_flips']}  "
            f"cover {rows[-1]['psnr_cover']:.3f} dB"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"images": args.images, "rows": rows}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    names = [r["rounding"] for r in rows]
    ax.barh(names, [r["flipped"]["top"] for r in rows])
    for y, r in enumerate(rows):
        ax.text(r["flipped"]["top"], y, f" {r['flipped']['top']:,} ({r['psnr_cover']:.2f} dB)", va="center", fontsize=8)
    ax.set_xlabel(f"top-level readings flipped by 8-bit storage, {args.images} crops (cover PSNR)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=100)


if __name__ == "__main__":
    main()
