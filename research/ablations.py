"""The ablation study: what each of the paper's parts and of our codes adds, at an equal budget.

Every row trains from scratch with the shipped model's recipe (preset ``fast``, the published-image attack mix, 30%
graphics secrets, the same targets), the same photos, the same number of steps and the same seed; only the part the
row names changes. The full model is trained twice (seeds 0 and 1) so the spread between seeds is known. Each row is
then measured on the held-out photos at 256 px, 8-bit (photo i hides photo i+1): cover PSNR / SSIM, the secret clean,
after the paper's five distortions, after JPEG 75 and after a 3 px shift (registration on where the model has the
codes), and steganalysis P_E (SRM + FLD ensemble, wavelet + FLD; five pair-aware splits of all photos' centre crops).

    python research/ablations.py --data PHOTOS [--steps 400] [--runs runs/ablations] \
        [--out docs/evaluation/ablations.md] [--rows full,no-sfm]

Training is resumable: a row whose run already reached ``--steps`` is only measured. Writes the Markdown table, a
Parquet of every figure and a PNG beside it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core.metrics import to_255
from pipeline.core.photos import validation_pairs
from pipeline.evaluate import steganalysis as S
from pipeline.evaluate.quick import quick_validation
from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.model.checkpoint import with_registration

# The shipped model's recipe (its last full training stage's attack mix and targets), at the preset's crop size.
RECIPE = [
    "--config", "fast", "--attack-mix", "published", "--synthetic-secrets", "0.3", "--crop", "128", "--batch", "8",
    "--cover-psnr-target", "36.5", "--ssim-target", "0.9465", "--scale-warmups",
]  # fmt: skip
# The analytic codes of the shipped model (``pipeline/model/codes/``) and its light score head.
CODES = ["--light-score", "--residual-gain", "0.06", "--deblur", "--base-tile", "--mirror", "pilot"]


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    flags: list[str] = field(default_factory=list)
    codes: bool = True
    seed: int = 0


ROWS = [
    Row("full", "the shipped design (seed 0)"),
    Row("full-seed1", "the shipped design (seed 1)", seed=1),
    Row("no-lpfdd", "a learned strided-conv stack of the same FLOPs instead of LPFDD", ["--no-lpfdd"]),
    Row("no-glem-global", "GLEM without its global branch", ["--no-glem-global"]),
    Row("no-sfm", "shallow and deep features added instead of SFM", ["--no-sfm"]),
    Row("constant-score", "a constant score map (gain 1 everywhere)", ["--no-score-map"]),
    Row("score-no-realfake", "score map not trained against the real/fake task", ["--no-realfake"]),
    Row("no-codes", "no analytic codes: the learned paths alone", ["--no-thumbnail-code"], codes=False),
    Row("hinet", "HiNet-style invertible baseline", ["--baseline", "hinet"], codes=False),
    Row("unet", "U-Net baseline", ["--baseline", "unet"], codes=False),
]
FIGURES = {
    "psnr_cover": "cover dB",
    "ssim_cover": "SSIM",
    "psnr_secret": "clean",
    "psnr_secret_mean3": "mean3",
    "psnr_secret_gauss1": "gauss1",
    "psnr_secret_sharpen": "sharpen",
    "psnr_secret_noise5": "noise5",
    "psnr_secret_hflip": "hflip",
    "psnr_secret_jpeg75": "jpeg75",
    "psnr_secret_shift3": "shift3",
}


def trained_steps(run: Path) -> int:
    if not (run / "train_log.parquet").exists() or not (run / "model.pt").exists():
        return 0
    return int(max(pq.read_table(run / "train_log.parquet", columns=["step"]).column("step").to_pylist()))


def train(row: Row, data: str, runs: Path, steps: int, threads: int) -> None:
    run = runs / row.name
    if trained_steps(run) >= steps:
        return
    cmd = [sys.executable, "-m", "pipeline", "train", "--data", data, "--out", str(run), *RECIPE]
    cmd += [*(CODES if row.codes else []), *row.flags, "--steps", str(steps), "--val-every", str(steps)]
    cmd += ["--seed", str(row.seed), "--threads", str(threads)]
    print(" ".join(cmd), flush=True)
    with open(runs / f"{row.name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)


def measure(row: Row, runs: Path, pairs: tuple[torch.Tensor, torch.Tensor], every: torch.Tensor) -> dict:
    model = load_model(runs / row.name / "model.pt")
    minutes = model.checkpoint_meta.get("minutes")
    if model.config.coded:
        model = with_registration(model)
    with torch.inference_mode():
        res = quick_validation(model, *pairs, published=True)
        nxt = every.roll(-1, 0)
        stegos = torch.cat([model.embed(every[i : i + 8], nxt[i : i + 8]) for i in range(0, len(every), 8)])
    covers8 = to_255(every).to(torch.uint8).numpy()
    stegos8 = to_255(stegos).to(torch.uint8).numpy()
    dets = [d for d in S.default_detectors() if d.name != "xunet"]
    pe = S.summarise_pe(S.run_steganalysis(covers8, stegos8, dets, progress=False))
    out = {"row": row.name, "what": row.what, "seed": row.seed, "train_minutes": minutes}
    out.update({k: float(res[k]) for k in res if k.startswith(("psnr_", "ssim_")) and isinstance(res[k], float)})
    out.update({f"pe_{d}": v["pe"] for d, v in pe.items()})
    return out


def write(rows: list[dict], out: Path, steps: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out.with_suffix(".parquet"))
    cols = [*FIGURES.values(), "P_E srm", "P_E wavelet", "train min"]
    lines = [
        "# Ablations at an equal budget",
        "",
        f"Every row: trained from scratch for {steps} steps (batch 8, 128 px crops, one CPU thread), seed 0 unless "
        "named, the shipped model's recipe (`research/ablations.py`); measured on the 8 held-out photos at 256 px, "
        "8-bit. Secret PSNR in dB; shift3 on the overlap, registration on for the rows with the codes. P_E: "
        "steganalysis error (0.5 = undetectable) on all photos' centre crops, five pair-aware splits. The budget is "
        "the step count; train min is wall time, which varied with whatever else the machine ran.",
        "",
        "| row | what changes | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = [f"{r[k]:.4f}" if k == "ssim_cover" else f"{r[k]:.2f}" for k in FIGURES]
        cells += [f"{r.get('pe_srm-fld', float('nan')):.3f}", f"{r.get('pe_wavelet-fld', float('nan')):.3f}"]
        cells.append(f"{r['train_minutes']:.1f}" if r["train_minutes"] is not None else "")
        lines.append(f"| {r['row']} | {r['what']} | " + " | ".join(cells) + " |")
    if {"full", "full-seed1"} <= {r["row"] for r in rows}:
        a, b = (next(r for r in rows if r["row"] == n) for n in ("full", "full-seed1"))
        spread = {FIGURES[k]: abs(a[k] - b[k]) for k in FIGURES if k != "ssim_cover"}
        lines += ["", "Seed spread of the full model (|seed 0 - seed 1|, dB): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in spread.items()) + "."]  # fmt: skip
    out.write_text("\n".join(lines) + "\n")
    chart(rows, out.with_suffix(".png"))


def chart(rows: list[dict], path: Path) -> None:
    keys = ["psnr_secret", "psnr_secret_noise5", "psnr_secret_jpeg75", "psnr_secret_shift3", "psnr_cover"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        ax.bar(x + (i - len(keys) / 2 + 0.5) * width, [r[k] for r in rows], width, label=FIGURES[k])
    ax.set_xticks(x, [r["row"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("Ablations at an equal budget (held out, 256 px)")
    ax.legend(ncol=len(keys), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="Folder of photos (the held-out ones are chosen by name).")
    ap.add_argument("--steps", type=int, default=400, help="Training steps of every row.")
    ap.add_argument("--runs", default="runs/ablations", help="Where the rows' training runs go.")
    ap.add_argument("--out", default="docs/evaluation/ablations.md")
    ap.add_argument("--rows", help="Comma-separated row names (default: all).")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per training run.")
    ap.add_argument("--measure-only", action="store_true", help="Measure the rows already trained, train nothing.")
    args = ap.parse_args()
    chosen = [r for r in ROWS if not args.rows or r.name in args.rows.split(",")]
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    train_imgs, val_imgs, _, _ = load_photos(args.data)
    pairs = validation_pairs(val_imgs, 256)
    every = validation_pairs(train_imgs + val_imgs, 256)[0]
    rows = []
    for row in chosen:
        t0 = time.time()
        if not args.measure_only:
            train(row, args.data, runs, args.steps, args.threads)
        if trained_steps(runs / row.name) < args.steps:
            print(f"{row.name}: not trained to {args.steps} steps, left out")
            continue
        rows.append(measure(row, runs, pairs, every))
        figures = ", ".join(f"{v} {rows[-1][k]:.2f}" for k, v in FIGURES.items())
        print(f"{row.name}: {time.time() - t0:.0f} s, {figures}", flush=True)
        write(rows, Path(args.out), args.steps)


if __name__ == "__main__":
    main()
