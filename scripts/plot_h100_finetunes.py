"""Plot the held-out validation of the H100 fine-tunes against minutes of training, one PNG per lent session.

    python scripts/plot_h100_finetunes.py      # docs/training/gpu-h100-{finetunes,noise,tile,most}.png

Reads the validation logs that scripts/gpu_train.sh brought back: docs/training/gpu-ft*-val_log.parquet (2026-11-26,
runs of scripts/gpu_finetune.runs and two continuations) and docs/training/gpu-noise-*-val_log.parquet (2026-11-27,
runs of scripts/gpu_noise.runs and two continuations) and docs/training/gpu-tile-*-val_log.parquet (2026-11-27,
runs of scripts/gpu_tile.runs: the tile-coded base against the plain one, and two continuations) and
docs/training/gpu-most-*-val_log.parquet (2026-11-27, runs of scripts/gpu_most.runs and two continuations).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyarrow.parquet as pq

from pipeline.evaluate.quick import BAR

DOCS = "docs/training"


@dataclass(frozen=True)
class Figure:
    out: str
    prefix: str  # the logs are DOCS/{prefix}{run}-val_log.parquet
    runs: dict[str, tuple[str, float]]  # run: (legend, minutes offset; continuations start where their parent ended)
    panels: dict[str, str]
    baseline: tuple[str, dict[str, float]]  # the shipped file they started from (`validate`, held out)
    xlabel: str
    title: str


# The noise sessions' panels: the cover budget against the figures it buys.
NOISE_PANELS = {
    "ssim_cover": "cover SSIM",
    "psnr_secret_noise5": "secret PSNR after noise sigma 5 (dB)",
    "psnr_secret_mean3": "secret PSNR after a 3x3 mean (dB)",
    "psnr_secret_sharpen": "secret PSNR after sharpening (dB)",
}


def start(label: str, ssim: float, noise: float, mean3: float, sharpen: float) -> tuple[str, dict[str, float]]:
    """A noise session's start (the shipped file, `validate` held out) in NOISE_PANELS' keys."""
    return label, dict(zip(NOISE_PANELS, (ssim, noise, mean3, sharpen), strict=True))


FIGURES = [
    Figure(
        out="gpu-h100-finetunes.png",
        prefix="gpu-",
        runs={
            "ft-fast": ("fast, batch 16, SSIM target 0.950", 0.0),
            "ft-fast-b32": ("fast, batch 32, SSIM target 0.945", 0.0),
            "ft-small": ("small, batch 16, SSIM target 0.955", 0.0),
            "ft2-fast": ("... then fast, batch 32, lr 1.5e-4", 7.5),
            "ft2-b32": ("... then batch 32, lr 1.5e-4", 7.5),
        },
        panels={
            "psnr_secret": "secret PSNR, clean (dB)",
            "psnr_secret_worst": "secret PSNR, worst attack (dB)",
            "ssim_cover": "cover SSIM",
        },
        baseline=(
            "stage 6 (the default before)",
            {"psnr_secret": 25.32, "psnr_secret_worst": 21.71, "ssim_cover": 0.9654},
        ),
        xlabel="minutes on the H100 (3 runs, then 2, sharing it)",
        title="Fine-tunes at 256 px crops on a lent H100: 8 held-out photos at 256 px (validation during training)",
    ),
    Figure(
        out="gpu-h100-noise.png",
        prefix="gpu-noise-",
        runs={
            "n945": ("SSIM target 0.945 (stage 10's)", 0.0),
            "n940": ("SSIM target 0.940", 0.0),
            "n935": ("SSIM target 0.935", 0.0),
            "n930": ("SSIM target 0.930", 0.0),
            "c940": ("... 0.940 then lr 1.5e-4", 7.8),
            "c935": ("... 0.935 then lr 1.5e-4", 7.8),
        },
        panels=NOISE_PANELS,
        baseline=start("stage 10 (the start)", 0.9624, 23.12, 24.23, 24.66),
        xlabel="minutes on the H100 (4 runs, then 2, sharing it)",
        title="Stage 10 fine-tuned with the 'noise' mix on a lent H100, batch 32: 8 held-out photos at 256 px",
    ),
    Figure(
        out="gpu-h100-tile.png",
        prefix="gpu-tile-",
        runs={
            "t945": ("tile-coded base, SSIM target 0.945", 0.0),
            "t948": ("tile-coded base, SSIM target 0.948", 0.0),
            "p945": ("plain base (control), SSIM target 0.945", 0.0),
            "p948": ("plain base (control), SSIM target 0.948", 0.0),
            "c945": ("... tile 0.945 then lr 1.5e-4", 8.0),
            "c948": ("... tile 0.948 then lr 1.5e-4", 8.0),
        },
        panels=NOISE_PANELS,
        baseline=start("stage 11 (the start)", 0.9586, 23.69, 24.92, 24.79),
        xlabel="minutes on the H100 (4 runs, then 2, sharing it)",
        title="Stage 11 fine-tuned with 'noise-heavy' on a lent H100, tile-coded base vs plain: 8 held-out photos",
    ),
    Figure(
        out="gpu-h100-most.png",
        prefix="gpu-most-",
        runs={
            "g9465": ("SSIM target 0.9465, lr 1e-4", 0.0),
            "g9478": ("SSIM target 0.9478, lr 1e-4", 0.0),
            "h9465": ("... 0.9465 then lr 5e-5", 8.7),
            "h9478": ("... 0.9478 then lr 5e-5", 8.7),
        },
        panels=NOISE_PANELS,
        baseline=start("stage 12 (the start)", 0.9568, 24.12, 25.00, 24.80),
        xlabel="minutes on the H100 (2 runs sharing it)",
        title="Stage 12 fine-tuned with 'noise-most' on a lent H100, batch 32: 8 held-out photos at 256 px",
    ),
]


def plot(fig_spec: Figure) -> None:
    fig, axes = plt.subplots(1, len(fig_spec.panels), figsize=(5 * len(fig_spec.panels), 4.2))
    for name, (label, offset) in fig_spec.runs.items():
        log = pq.read_table(f"{DOCS}/{fig_spec.prefix}{name}-val_log.parquet").to_pandas()
        style = "--" if offset else "-"
        for ax, key in zip(axes, fig_spec.panels, strict=True):
            ax.plot(log["minutes"] + offset, log[key], style, marker="o", ms=3, label=label)
    base_label, base = fig_spec.baseline
    for ax, (key, title) in zip(axes, fig_spec.panels.items(), strict=True):
        ax.axhline(base[key], color="grey", lw=1, ls=":", label=base_label)
        if key.startswith("psnr_secret_"):
            ax.axhline(BAR["psnr_secret_attacked"], color="red", lw=0.8, ls="-", alpha=0.5, label="bar")
        elif key == "ssim_cover":
            ax.axhline(BAR["ssim_cover"], color="red", lw=0.8, ls="-", alpha=0.5, label="bar")
        ax.set_title(title)
        ax.set_xlabel(fig_spec.xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(fig_spec.title)
    fig.tight_layout()
    fig.savefig(f"{DOCS}/{fig_spec.out}", dpi=110)
    plt.close(fig)


def main() -> None:
    for fig_spec in FIGURES:
        plot(fig_spec)


if __name__ == "__main__":
    main()
