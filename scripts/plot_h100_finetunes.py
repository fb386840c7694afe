"""Plot the held-out validation of the five H100 fine-tunes of 2026-11-26 against minutes of training.

    python scripts/plot_h100_finetunes.py      # docs/training/gpu-h100-finetunes.png

Reads docs/training/gpu-ft*-val_log.parquet (the validation logs that scripts/gpu_train.sh brought back, runs of
scripts/gpu_finetune.runs and their two continuations).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyarrow.parquet as pq

DOCS = "docs/training"
# run name: (legend, minutes offset; the continuations start where their parent run ended)
RUNS = {
    "ft-fast": ("fast, batch 16, SSIM target 0.950", 0.0),
    "ft-fast-b32": ("fast, batch 32, SSIM target 0.945", 0.0),
    "ft-small": ("small, batch 16, SSIM target 0.955", 0.0),
    "ft2-fast": ("... then fast, batch 32, lr 1.5e-4", 7.5),
    "ft2-b32": ("... then batch 32, lr 1.5e-4", 7.5),
}
PANELS = {
    "psnr_secret": "secret PSNR, clean (dB)",
    "psnr_secret_worst": "secret PSNR, worst attack (dB)",
    "ssim_cover": "cover SSIM",
}
STAGE6 = {"psnr_secret": 25.32, "psnr_secret_worst": 21.71, "ssim_cover": 0.9654}  # `validate`, held out


def main() -> None:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.2))
    for name, (label, offset) in RUNS.items():
        log = pq.read_table(f"{DOCS}/gpu-{name}-val_log.parquet").to_pandas()
        style = "--" if name.startswith("ft2") else "-"
        for ax, key in zip(axes, PANELS, strict=True):
            ax.plot(log["minutes"] + offset, log[key], style, marker="o", ms=3, label=label)
    for ax, (key, title) in zip(axes, PANELS.items(), strict=True):
        ax.axhline(STAGE6[key], color="grey", lw=1, ls=":", label="stage 6 (the default before)")
        ax.set_title(title)
        ax.set_xlabel("minutes on the H100 (3 runs, then 2, sharing it)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Fine-tunes at 256 px crops on a lent H100: 8 held-out photos at 256 px (validation during training)")
    fig.tight_layout()
    fig.savefig(f"{DOCS}/gpu-h100-finetunes.png", dpi=110)


if __name__ == "__main__":
    main()
