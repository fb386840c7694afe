"""How much of the revealed secret the analytic codes carry and how much the learned paths add.

For each condition, three readings of the same attacked stego (held-out photos, photo i hides photo i+1, 8-bit):

    thumbnail code      the ThumbnailReader's own reading: the secret's 8x8 and 4x4 block means, upsampled
    + learned path      what the reveal network makes of the stego and that reading (no residual code)
    + residual code     the full reveal (``model.reveal``): the residual code added where it survived

and the cover the embed paid for them. The rows of a shift are read with registration on (``with_registration``) and
measured on the overlap with the original. Writes a Markdown table, a Parquet and a PNG (``--out``).

    python research/code_share.py --data PHOTOS [--checkpoint CKPT] [--out docs/evaluation/code_share.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.core import distortions as D
from pipeline.core.distortions import jpeg, resize, shift, webp
from pipeline.core.metrics import psnr, ssim
from pipeline.core.photos import validation_pairs
from pipeline.evaluate.published import overlap_psnr
from pipeline.evaluate.readings import READINGS, part_readings
from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.model.checkpoint import with_registration

CONDITIONS = {
    "clean": lambda x: x,
    "noise5": lambda x: D.gaussian_noise(x, 5.0, torch.Generator().manual_seed(0)),
    "jpeg90": lambda x: jpeg(x, 90),
    "jpeg75": lambda x: jpeg(x, 75),
    "jpeg50": lambda x: jpeg(x, 50),
    "webp80": lambda x: webp(x, 80),
    "resize0.5": lambda x: resize(x, 0.5),
    "shift3": lambda x: shift(x, 3),
}


def measure(model: torch.nn.Module, covers: torch.Tensor, secrets: torch.Tensor) -> list[dict]:
    registered = with_registration(model)
    with torch.inference_mode():
        stegos = D.quantize(model.embed(covers, secrets))
        cover = {
            "cover psnr": psnr(stegos * 255, covers * 255).mean().item(),
            "cover ssim": ssim(stegos * 255, covers * 255).mean().item(),
        }
        rows = []
        for name, attack in tqdm(CONDITIONS.items(), desc="conditions", unit="cond"):
            k = int(name[5:]) if name.startswith("shift") else 0
            reader = registered if k else model
            for reading, revealed in part_readings(reader, D.quantize(attack(stegos))).items():
                value = overlap_psnr(revealed * 255, secrets * 255, k)[0]
                rows.append({"condition": name, "reading": reading, "secret psnr": value.mean().item(), **cover})
    return rows


def table(rows: list[dict]) -> str:
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    cell = {(r["condition"], r["reading"]): r["secret psnr"] for r in rows}
    lines = ["| reading | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
    lines += [f"| {rd} | " + " | ".join(f"{cell[c, rd]:.2f}" for c in conds) + " |" for rd in READINGS]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(dict.fromkeys(r["condition"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.27
    for i, rd in enumerate(READINGS):
        vals = [next(r["secret psnr"] for r in rows if r["condition"] == c and r["reading"] == rd) for c in conds]
        ax.bar([j + (i - 1) * width for j in range(len(conds))], vals, width, label=rd)
    ax.set_xticks(range(len(conds)), conds)
    ax.set_ylabel("secret PSNR (dB)")
    ax.set_ylim(5, None)
    ax.set_title("What each part of reveal carries (held-out photos, 256 px)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of photos (the held-out split is used)")
    ap.add_argument("--checkpoint", help="model checkpoint [default: the shipped model]")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="docs/evaluation/code_share.md", help="Markdown; Parquet and PNG beside it")
    args = ap.parse_args()
    model = load_model(args.checkpoint)
    _, val, _, _ = load_photos(args.data, model.config.channels, 0.2)
    covers, secrets = validation_pairs(val, args.size, model.config.num_secrets)
    rows = measure(model, covers, secrets)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out.with_suffix(".parquet"))
    plot(rows, out.with_suffix(".png"))
    text = table(rows)
    head = (
        f"# What the codes carry\n\n`python research/code_share.py --data PHOTOS"
        f"{' --checkpoint ' + args.checkpoint if args.checkpoint else ''}` ({len(covers)} held-out photos, "
        f"{args.size} px; cover {rows[0]['cover psnr']:.2f} dB / SSIM {rows[0]['cover ssim']:.4f}). "
        "Secret PSNR (dB).\n\n"
    )
    out.write_text(head + text + "\n\n![what each part carries](code_share.png)\n")
    print(text)


if __name__ == "__main__":
    main()
