"""Where a model's secret error lies: the 8x8 block means against the detail within the blocks, per attack.

    python research/secret_error_bands.py --data PHOTOS CKPT [CKPT ...]

The 8 held-out photos at 256 px, photo i hiding photo i+1 (as `validate`). The recovered secret's error splits into two
orthogonal parts, its 8x8 block means (what the thumbnail code's base carries) and the rest; each is printed as the
PSNR it alone would give, averaged over the photos, with the whole secret's PSNR. Also the thumbnail code reader's own
reading of the 8x8 means (no deep path): how much of the means the code carries by itself in the trained model.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from pipeline.core.metrics import to_255
from pipeline.core.photos import validation_pairs
from pipeline.evaluate.quick import QUICK_ATTACKS
from pipeline.io.photos import load_photos
from pipeline.model.checkpoint import load_model
from pipeline.model.codes.thumbnail import BASE_BLOCK

ATTACKS = ("clean", "noise5", "mean3")


def db(mse: torch.Tensor) -> float:
    return (10 * torch.log10(1 / mse)).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("checkpoints", nargs="+")
    args = ap.parse_args()
    _, held_out, _, _ = load_photos(args.data, 3, 0.2)
    covers, secrets = validation_pairs(held_out, 256)  # already 8-bit values, as `validate` hides them
    true_means = F.avg_pool2d(secrets, BASE_BLOCK)
    for path in args.checkpoints:
        model = load_model(path)
        reader = model.thumbnail.reader
        with torch.no_grad():
            stego = to_255(model.embed(covers, secrets)) / 255
            for name in ATTACKS:
                seen = to_255(stego if name == "clean" else QUICK_ATTACKS[name](stego)) / 255
                err = to_255(model.reveal(seen)) / 255 - secrets
                means = F.interpolate(F.avg_pool2d(err, BASE_BLOCK), scale_factor=BASE_BLOCK, mode="nearest")
                code_means = reader.base_means(model.restore(seen))[:, :3].clamp(0, 1)
                code = (code_means - true_means).square().mean(dim=(1, 2, 3))
                print(
                    f"{path} {name:7s} secret {db(err.square().mean(dim=(1, 2, 3))):.2f} dB | 8x8 means "
                    f"{db(means.square().mean(dim=(1, 2, 3))):.2f} | within blocks "
                    f"{db((err - means).square().mean(dim=(1, 2, 3))):.2f} | the code's own reading of the means "
                    f"{db(code):.2f}"
                )


if __name__ == "__main__":
    main()
