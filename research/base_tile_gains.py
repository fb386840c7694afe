"""The tile-coded base's gains (``TILE_GAINS`` in pipeline/model/codes/thumbnail.py), and the analytic codes compared.

    python research/base_tile_gains.py --data PHOTOS             # the gains, from the training photos
    python research/base_tile_gains.py --data PHOTOS --compare   # plain vs tile-coded, analytic codes alone

The base code writes a value per 8x8 block at ``gain = 8 x 10 / 255`` per unit; noise of sigma 5 grey levels adds
``N = (5/255)^2`` to each slot. For the frequencies k of a TILE x TILE DCT of the means, with powers ``var_k`` over the
training photos, the linear scheme with the least mean squared error after a Wiener reader gives frequency k the power
``p_k = max(0, sqrt(N var_k / mu) - N)``, mu set so that ``sum p_k`` is the plain code's power ``gain^2 sum var_k``;
its gain relative to the plain code is ``sqrt(p_k / var_k) / gain``. ``--compare`` writes each code alone (no deep
paths, the untrained analytic thumbnail code) into the 256 px centre crops and reads the 8x8 means back, clean and
attacked.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from pipeline.core.metrics import psnr, ssim, to_255
from pipeline.core.photos import validation_pairs
from pipeline.evaluate.quick import QUICK_ATTACKS
from pipeline.io.photos import load_photos
from pipeline.model.codes.thumbnail import BASE_BLOCK, TILE, ThumbnailReader, ThumbnailWriter, tile_dct

GAIN, NOISE = BASE_BLOCK * 10 / 255, (5 / 255) ** 2


def gains(means: torch.Tensor) -> torch.Tensor:
    """8x8 block means minus 0.5 (B, C, h, w) -> the (TILE, TILE) gains."""
    dct = tile_dct()
    tiles = F.pixel_unshuffle(means, TILE)  # (B, C * T2, h / T, w / T), each channel's tile entries together
    b, _, h, w = tiles.shape
    coef = torch.einsum("kj,bcjhw->bckhw", dct, tiles.reshape(b, -1, TILE * TILE, h, w))
    var = coef.square().mean(dim=(0, 1, 3, 4))
    power = GAIN**2 * var.sum()
    lo, hi = 1e-12, 1e6
    for _ in range(200):  # bisection on the water level (geometric: mu spans many decades)
        mu = math.sqrt(lo * hi)
        p = (torch.sqrt(NOISE * var / mu) - NOISE).clamp_min(0)
        lo, hi = (mu, hi) if p.sum() > power else (lo, mu)
    return ((p / var).sqrt() / GAIN).reshape(TILE, TILE)


def compare(covers: torch.Tensor, secrets: torch.Tensor, label: str) -> None:
    true = F.avg_pool2d(secrets, BASE_BLOCK)
    for tile in (False, True):
        writer, reader = ThumbnailWriter(3, 1, 10.0, tile), ThumbnailReader(3, 1, 10.0, tile)
        with torch.no_grad():
            stego = to_255((covers + F.pixel_shuffle(writer.base(covers, secrets), BASE_BLOCK)).clamp(0, 1))
            row = [f"cover {psnr(stego, to_255(covers)).mean():.2f} dB / {ssim(stego, to_255(covers)).mean():.4f}"]
            for name in ("clean", "noise5", "mean3", "sharpen"):
                x = stego / 255 if name == "clean" else QUICK_ATTACKS[name](stego / 255)
                means = reader.base_means(to_255(x) / 255)
                mse = (means.clamp(0, 1) - true).square().mean(dim=(1, 2, 3))
                row.append(f"{name} {(10 * torch.log10(1 / mse)).mean():.2f} dB")
        print(f"{label:9s} {'tile ' if tile else 'plain'}  " + " | ".join(row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the photo folder training uses")
    ap.add_argument("--compare", action="store_true", help="also compare the two analytic codes (8x8 means read back)")
    args = ap.parse_args()
    train, held_out, _, _ = load_photos(args.data, 3, 0.2)
    every = validation_pairs(train + held_out, 256)  # the training photos' crops first, each hiding the next
    g = gains(F.avg_pool2d(every[0][: len(train)], BASE_BLOCK) - 0.5)
    print("TILE_GAINS (training photos):")
    for row in g.tolist():
        print("    (" + ", ".join(f"{v:.3f}" for v in row) + "),")
    if args.compare:
        compare(*validation_pairs(held_out, 256), "held-out")
        compare(*every, "all")


if __name__ == "__main__":
    main()
