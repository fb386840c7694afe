"""What the cover would have to give for more secret after JPEG: the digital layer's main level, wider and stronger.

The `main` level (the one JPEG 75-90 leaves readable) takes the `top` level's coefficients with the smallest JPEG
quantiser steps, and a larger step of its own; its
payload grows with its slots at about the shipped code rate, and `top` keeps the rest of its coefficients at a
proportional payload. Per variant, on the held-out photos (256 px centre squares, photo i hides photo i+1, the public
key): the cover's PSNR and SSIM and the secret's PSNR clean and after JPEG 90 / 75 / 50 (Pillow, 4:2:0).

    python research/digital_tradeoff.py --data PHOTOS [--checkpoint k1] [--out docs/evaluation/digital_tradeoff]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr, ssim, to_255
from pipeline.core.photos import validation_pairs
from pipeline.io.photos import load_photos
from pipeline.model import load_model, with_digital
from pipeline.model.digital.codewords import JPEG_LUMA_Q50

# (name, coefficients moved from `top` to `main`, `main`'s step as a multiple of the quality-50 table)
VARIANTS = (("shipped", 0, None), ("main +5", 5, None), ("main +5, 1.6x", 5, 1.6), ("main +10, 1.6x", 10, 1.6))
CONDITIONS = {"clean": lambda x: x, "jpeg90": lambda x: D.jpeg(x, 90), "jpeg75": lambda x: D.jpeg(x, 75),
              "jpeg50": lambda x: D.jpeg(x, 50)}  # fmt: skip


def variant(model, moved: int, step: float | None):
    """The model with ``moved`` of `top`'s coefficients given to `main` (at ``step``), payloads scaled with slots."""
    base, main, top = model.config.digital.levels
    by_table = sorted(top.coeffs, key=lambda c: JPEG_LUMA_Q50[c[0]][c[1]])  # the lowest quantiser steps first
    coeffs = main.coeffs + tuple(by_table[:moved])
    new_main = dataclasses.replace(
        main, coeffs=coeffs, step=step or main.step, payload=round(main.payload * len(coeffs) / len(main.coeffs))
    )
    rest = tuple(c for c in top.coeffs if c not in coeffs)
    new_top = dataclasses.replace(top, coeffs=rest, payload=round(top.payload * len(rest) / len(top.coeffs)))
    return with_digital(model, levels=(base, new_main, new_top))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default="docs/evaluation/digital_tradeoff")
    args = ap.parse_args()
    shipped = load_model(args.checkpoint)
    if shipped.digital is None:
        raise SystemExit("this model has no digital layer")
    _, val, _, _ = load_photos(args.data, 3, 0.2)
    covers, secrets = validation_pairs(val, 256, shipped.config.num_secrets)
    rows = []
    for name, moved, step in VARIANTS:
        model = variant(shipped, moved, step)
        with torch.inference_mode():
            one = [model.embed(covers[i : i + 1], secrets[i : i + 1]) for i in range(len(covers))]
            stego = D.quantize(torch.cat(one))
            row = {"variant": name, "main_payload": model.config.digital.levels[1].payload,
                   "psnr_cover": psnr(to_255(stego), to_255(covers)).mean().item(),
                   "ssim_cover": ssim(to_255(stego), to_255(covers)).mean().item()}  # fmt: skip
            for cond, attack in CONDITIONS.items():
                revealed = model.reveal(D.quantize(attack(stego)))
                row[f"psnr_secret_{cond}"] = psnr(to_255(revealed), to_255(secrets)).clamp(max=100).mean().item()
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": "python research/digital_tradeoff.py --data PHOTOS",
                                                    "rows": rows}, indent=1))  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cond in CONDITIONS:
        ax.plot([r["ssim_cover"] for r in rows], [r[f"psnr_secret_{cond}"] for r in rows], "o-", label=cond)
    for r in rows:
        ax.annotate(r["variant"], (r["ssim_cover"], r["psnr_secret_jpeg75"]), fontsize=7)
    ax.axvline(0.95, color="k", lw=0.5)
    ax.invert_xaxis()
    ax.set_xlabel("cover SSIM (the bar: 0.95)")
    ax.set_ylabel("secret PSNR (dB)")
    ax.legend()
    ax.set_title("The digital layer's main level: secret after JPEG against the cover it costs")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
