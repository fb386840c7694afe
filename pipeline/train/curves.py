"""Learning curves of a run as one PNG (training losses and validation figures against step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(log_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in log_rows]
    ax = axes[0]
    ax.plot(steps, [r["psnr_cover"] for r in log_rows], label="cover PSNR (train)", alpha=0.6)
    ax.plot(steps, [r["psnr_secret"] for r in log_rows], label="secret PSNR (train, attacked)", alpha=0.6)
    if val_rows:
        vs = [r["step"] for r in val_rows]
        ax.plot(vs, [r["psnr_cover"] for r in val_rows], "o-", label="cover PSNR (val)")
        ax.plot(vs, [r["psnr_secret"] for r in val_rows], "o-", label="secret PSNR (val, clean)")
        ax.plot(vs, [r["psnr_secret_worst"] for r in val_rows], "o-", label="secret PSNR (val, worst attack)")
    ax.set_xlabel("step")
    ax.set_ylabel("dB")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(steps, [r["ssim_cover"] for r in log_rows], label="cover SSIM (train)")
    if val_rows:
        ax.plot([r["step"] for r in val_rows], [r["ssim_cover"] for r in val_rows], "o-", label="cover SSIM (val)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[2]
    for key in ("lambda_cover", "l_flip", "l_d", "l_score", "l_guide"):
        ax.plot(steps, [r[key] for r in log_rows], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
