"""How the cover budget should be split between the digital layer and SRIS-Net's analog path: the curve.

The digital layer is written as configured; the analog path's change to the cover is scaled by a share from 0 (the
network's change is not written) to 1 (all of it), and by 0.15 more in flat blocks. Per share, on the held-out
photos: the cover's PSNR, SSIM and flat-block PSNR, the secret after each condition of ``validate`` (the digital
secret where a level decodes, the analog one elsewhere), and what a reader with a wrong key gets back (the analog
path is not keyed: whatever it carries, anyone holding the model reads).

    python research/budget_split.py --data PHOTOS [--checkpoint k1] [--out docs/evaluation/budget_split]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr, to_255
from pipeline.core.photos import validation_pairs
from pipeline.evaluate.quick import quick_validation
from pipeline.io.photos import load_photos
from pipeline.model import load_model, with_digital
from pipeline.model.digital.keys import Key

SHARES = (0.0, 0.5, 1.0)
FLAT_SHARE = 0.15
SHOWN = ("psnr_secret", "psnr_secret_mean3", "psnr_secret_noise5", "psnr_secret_jpeg75", "psnr_secret_jpeg50")


def with_share(model, share: float):
    """The model with the analog path's share of the cover budget set to ``share`` (weights shared)."""
    return with_digital(model, analog_gain=share, analog_flat_gain=FLAT_SHARE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default="docs/evaluation/budget_split")
    args = ap.parse_args()
    base = load_model(args.checkpoint)
    if base.digital is None:
        raise SystemExit("this model has no digital layer")
    _, val, _, _ = load_photos(args.data, 3, 0.2)
    covers, secrets = validation_pairs(val, 256, base.config.num_secrets)
    rows = []
    for share in SHARES:
        model = with_share(base, share)
        with torch.inference_mode():
            res = quick_validation(model, covers, secrets, published=True)
            stego = D.quantize(model.embed(covers, secrets))
            wrong = model.reveal(stego, key=Key(bytes(32)))
        res = {k: v for k, v in res.items() if isinstance(v, float)}
        res["psnr_secret_wrong_key"] = psnr(to_255(wrong), to_255(secrets)).mean().item()
        rows.append({"share": share, **res})
        print(f"share {share}: " + " ".join(f"{k}={res[k]:.3f}" for k in ("psnr_cover", "ssim_cover", *SHOWN)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": "python research/budget_split.py --data PHOTOS",
                                                    "rows": rows}, indent=1))  # fmt: skip
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = [r["share"] for r in rows]
    a.plot(x, [r["psnr_cover"] for r in rows], "o-", label="cover PSNR")
    a.plot(x, [r["psnr_cover_flat"] for r in rows], "s-", label="flat-block PSNR")
    a.set_xlabel("analog path's share of its change")
    a.set_ylabel("dB")
    a2 = a.twinx()
    a2.plot(x, [r["ssim_cover"] for r in rows], "k^--", label="cover SSIM")
    a2.axhline(0.95, color="k", lw=0.5)
    a.legend(loc="lower left")
    a2.legend(loc="upper right")
    for key in (*SHOWN, "psnr_secret_wrong_key"):
        b.plot(x, [r[key] for r in rows], "o-", label=key.replace("psnr_secret", "secret").replace("_", " "))
    b.set_xlabel("analog path's share of its change")
    b.set_ylabel("secret PSNR (dB)")
    b.legend(fontsize=8)
    fig.suptitle("Budget split between the digital layer and the analog path (held-out photos, 256 px)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
