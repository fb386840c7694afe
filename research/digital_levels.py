"""What each layer of a digital-layer model carries per condition: the levels that decode, the secret's source and PSNR.

For the held-out photos (256 px centre squares; photo i hides photo i+1), the model embeds with the public key and a
per-image message; each condition (the laboratory distortions, the published-image conditions and their family:
other qualities, scales, shifts, crops) is applied to the 8-bit stego, and ``model.read`` reveals it. Per
condition: the fraction of images each level decodes on, how often the secret came from each layer (``analog``:
no level decoded), the fraction marked and with the message intact, the secret PSNR (whole frame; a shift's on
its overlap, as ``validate``), and the same with photos as graphics secrets (``--graphics-secrets``).

    python research/digital_levels.py --data PHOTOS [--checkpoint k1] [--out docs/evaluation/digital_levels]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr, to_255
from pipeline.core.photos import validation_pairs
from pipeline.evaluate.published import FAMILY, PUBLISHED, SHIFT_OF, overlap_psnr
from pipeline.evaluate.quick import QUICK_ATTACKS, mean_db
from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.train.graphics import VALIDATION_SEED, GraphicsSampler

CONDITIONS = {"clean": lambda x: x, **QUICK_ATTACKS, **PUBLISHED, **FAMILY}
LAYERS = ("top", "main", "base", "analog")


def measure(model, covers: torch.Tensor, secrets: torch.Tensor, label: str) -> list[dict]:
    """One row per condition for these pairs."""
    messages = [f"asset-{i:04d}".encode() for i in range(len(covers))]
    with torch.inference_mode():
        stego = D.quantize(
            torch.cat(
                [model.embed(covers[i : i + 1], secrets[i : i + 1], messages=[m]) for i, m in enumerate(messages)]
            )
        )
        rows = []
        for name, attack in CONDITIONS.items():
            got = model.read(D.quantize(attack(stego)))
            revealed = to_255(torch.stack([r.secrets for r in got]))
            if name in SHIFT_OF:
                values, _ = overlap_psnr(revealed, to_255(secrets), SHIFT_OF[name])
            else:
                values = psnr(revealed, to_255(secrets))
            layers = Counter(r.layer for r in got)
            row = {"secrets": label, "condition": name, "psnr_secret": mean_db(values)}  # an exact copy: 100 dB
            for lv in ("base", "main", "top"):
                row[f"decodes_{lv}"] = sum(r.levels.get(lv, False) for r in got) / len(got)
            for lv in LAYERS:
                row[f"from_{lv}"] = layers.get(lv, 0) / len(got)
            row["marked"] = sum(r.marked for r in got) / len(got)
            row["message_ok"] = sum(r.message == m for r, m in zip(got, messages, strict=True)) / len(got)
            rows.append(row)
            print(
                f"{label:8s} {name:11s} {row['psnr_secret']:6.2f} dB  "
                + " ".join(f"{k}={v:.2f}" for k, v in row.items() if k.startswith(("decodes", "from")))
            )
    return rows


def write(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out.with_suffix(".parquet"))
    head = "| secrets | condition | secret PSNR | base | main | top | from top/main/base/analog | marked | message |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        src = " / ".join(f"{r[f'from_{lv}']:.2f}" for lv in LAYERS)
        levels = " | ".join(f"{r[f'decodes_{lv}']:.2f}" for lv in ("base", "main", "top"))
        cells = [r["secrets"], r["condition"], f"{r['psnr_secret']:.2f}", levels, src]
        lines.append("| " + " | ".join(cells) + f" | {r['marked']:.2f} | {r['message_ok']:.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    photos = [r for r in rows if r["secrets"] == "photos"]
    fig, ax = plt.subplots(figsize=(14, 5))
    names = [r["condition"] for r in photos]
    bottom = [0.0] * len(photos)
    colours = {"top": "#2a9d8f", "main": "#e9c46a", "base": "#f4a261", "analog": "#e76f51"}
    for lv in LAYERS:
        vals = [r[f"from_{lv}"] for r in photos]
        ax.bar(names, vals, bottom=bottom, color=colours[lv], label=f"secret from {lv}")
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax2 = ax.twinx()
    ax2.plot(names, [r["psnr_secret"] for r in photos], "k.-", label="secret PSNR (dB)")
    ax2.set_ylabel("secret PSNR (dB)")
    ax.set_ylabel("fraction of images")
    ax.tick_params(axis="x", rotation=70)
    ax.legend(loc="lower left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    ax.set_title("Which layer gives the secret, per condition (held-out photos, 256 px)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default="docs/evaluation/digital_levels")
    args = ap.parse_args()
    model = load_model(args.checkpoint)
    _, val, _, _ = load_photos(args.data, 3, 0.2)
    covers, secrets = validation_pairs(val, 256, model.config.num_secrets)
    rows = measure(model, covers, secrets, "photos")
    graphics = GraphicsSampler(256, 3, seed=VALIDATION_SEED).batch(secrets.shape[0] * model.config.num_secrets)
    rows += measure(model, covers, graphics.reshape(secrets.shape), "graphics")
    write(rows, Path(args.out))


if __name__ == "__main__":
    main()
