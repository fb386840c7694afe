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

from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.model.digital import modulation as mod

ROOT = Path(__file__).resolve().parents[1]
TOLERANCES = (None, 0.0, 0.1, 0.2, 0.3)  # None: plain rounding


def crops(data: str, n: int) -> np.ndarray:
    """(n, 256, 256, 3) uint8: the benchmark shard's first ``n`` crops of the held-out photos."""
    spec = importlib.util.spec_from_file_location("make_shard", ROOT / "benchmarks" / "make_shard.py")
    make_shard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_shard)
    _, held_out, _, _ = load_photos(data, 3, 0.2, max_side=8192)
    photos = [t.permute(1, 2, 0).contiguous().numpy() for t in held_out]
    return np.stack(make_shard.crops(photos, 288, 256, 0)[:n])


def secret(data: str) -> np.ndarray:
    """The first training photo, its centre square at 256 px."""
    from PIL import Image

    train, _, _, _ = load_photos(data, 3, 0.2, max_side=8192)
    img = train[0].permute(1, 2, 0).contiguous().numpy()
    h, w = img.shape[:2]
    s = min(h, w)
    square = np.ascontiguousarray(img[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2])
    return np.asarray(Image.fromarray(square).resize((256, 256), Image.LANCZOS))


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
        want = torch.from_numpy(layer._slot_bits(prepared, i, [None] * b)).view(b, g, g, len(lv.coeffs))
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
    prepared = layer.prepare([secret(args.data)], None)
    covers = torch.from_numpy(crops(args.data, args.images)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        written = mod.clip_keeping_luma(layer.embed(covers, covers, prepared, None)) * 255  # (B, 3, N, N) floats
    rows = []
    for tol in TOLERANCES:
        hwc = written.permute(0, 2, 3, 1)
        stored = hwc.round() if tol is None else mod.round_keeping_luma(hwc, tol).float()
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
