"""Calibrating ``model.detect``: its scores on unmarked photo crops (the null), the threshold, and the rate at which
it finds marks after each distortion (``python -m pipeline calibrate-detection``).

Unmarked: ``crops`` random square crops of every photo (and its centre square), each as it is and after every
condition of ``CONDITIONS``; marked: the same crops used as covers (photo i hides photos i+1 .. i+K), stego 8-bit,
after the same conditions. The threshold is the smallest multiple of ``step`` above every unmarked score: its
measured false-positive rate on this set is 0, and the record gives the set's size and the one-sided 95% upper
bound on the rate (3 / n). The record goes into the checkpoint's ``meta["detection"]``, where ``model.detect``'s
callers (the extract job's ``marked`` column) read the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.core import distortions as D
from pipeline.core.photos import square_crops
from pipeline.evaluate.published import PUBLISHED

MEASURED_BY = "python -m pipeline calibrate-detection"

LABORATORY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "clean": lambda x: x,
    "hflip": D.hflip,
    "mean3": D.mean_filter,
    "gauss1": lambda x: D.gaussian_filter(x, 1.0),
    "sharpen": D.sharpen,
    "noise5": lambda x: D.gaussian_noise(x, 5.0, torch.Generator().manual_seed(0)),
}
CONDITIONS = {**LABORATORY, **PUBLISHED}
"""The conditions the rates are measured after, in report order: the quality bar's, then the published images'."""


@dataclass
class Calibration:
    """One calibration: every score (``rows``: condition, kind = unmarked | marked, score), the threshold and the
    true-positive rate at it per condition."""

    rows: list[dict]
    threshold: float
    rates: dict[str, float]
    size: int
    crops: int
    seed: int

    @property
    def unmarked(self) -> int:
        return sum(r["kind"] == "unmarked" for r in self.rows)

    def record(self) -> dict:
        """What the checkpoint's ``meta["detection"]`` holds: the threshold and how it was measured."""
        return {
            "threshold": self.threshold,
            "unmarked_images": self.unmarked,
            "false_positives": 0,
            "false_positive_rate_95_upper": 3 / self.unmarked,
            "true_positive_rate": self.rates,
            "size": self.size,
            "crops_per_photo": self.crops,
            "seed": self.seed,
            "measured_by": MEASURED_BY,
        }

    def table(self) -> list[str]:
        """The Markdown lines the command prints: per condition, the unmarked maximum, the marked minimum and median,
        and the true-positive rate."""
        lines = [
            "| condition | unmarked max | marked min | marked median | true-positive rate |",
            "|---|---|---|---|---|",
        ]
        for name in self.rates:
            u = [r["score"] for r in self.rows if r["condition"] == name and r["kind"] == "unmarked"]
            m = sorted(r["score"] for r in self.rows if r["condition"] == name and r["kind"] == "marked")
            lines.append(f"| {name} | {max(u):.2f} | {m[0]:.2f} | {m[len(m) // 2]:.2f} | {self.rates[name]:.4f} |")
        return lines


def _scores(model: torch.nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([model.detect(images[i : i + batch]) for i in range(0, len(images), batch)])


@torch.inference_mode()
def calibrate(
    model: torch.nn.Module,
    photos: list[torch.Tensor],
    crops: int = 4,
    size: int = 256,
    seed: int = 0,
    step: float = 0.5,
    batch: int = 16,
    progress: bool = True,
) -> Calibration:
    """Score unmarked crops of ``photos`` ((C, H, W) uint8 each) and their stegos after every condition; the
    threshold above every unmarked score (rounded up to ``step``) and the true-positive rates at it."""
    from tqdm import tqdm

    covers = square_crops(photos, crops, size, seed, centre=True)
    k = model.config.num_secrets  # photo i hides photos i+1 .. i+K
    secrets = torch.cat([covers.roll(j, dims=0) for j in range(1, k + 1)], dim=1)
    stegos = torch.cat(
        [D.quantize(model.embed(covers[i : i + 8], secrets[i : i + 8])) for i in range(0, len(covers), 8)]
    )
    rows = []
    for name, f in tqdm(CONDITIONS.items(), desc="conditions", unit="cond", disable=not progress):
        for kind, images in (("unmarked", covers), ("marked", stegos)):
            rows += [
                {"condition": name, "kind": kind, "score": float(s)}
                for s in _scores(model, D.quantize(f(images)), batch)
            ]
    null = [r["score"] for r in rows if r["kind"] == "unmarked"]
    threshold = math.ceil(max(null) / step + 1e-9) * step
    rates = {}
    for name in CONDITIONS:
        marked = [r["score"] for r in rows if r["condition"] == name and r["kind"] == "marked"]
        rates[name] = sum(s >= threshold for s in marked) / len(marked)
    return Calibration(rows, threshold, rates, size, crops, seed)


def write_scores(cal: Calibration, out: str | Path) -> tuple[Path, Path]:
    """The scores as Parquet (one row per image and condition, with the threshold) and a box plot beside it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.core.files import atomic_path

    out = Path(out)
    table = pa.Table.from_pylist(cal.rows)
    with atomic_path(out) as tmp:
        pq.write_table(table.append_column("threshold", pa.array([cal.threshold] * len(cal.rows))), tmp)
    png = out.with_suffix(".png")
    plot(cal, png)
    return out, png


def plot(cal: Calibration, path: Path) -> None:
    """The unmarked scores (all conditions) against the marked ones per condition, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(cal.rates)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    null = [r["score"] for r in cal.rows if r["kind"] == "unmarked"]
    marked = [[r["score"] for r in cal.rows if r["kind"] == "marked" and r["condition"] == n] for n in names]
    ax.boxplot([null, *marked], showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(names) + 2), ["unmarked\n(all)", *names], rotation=60, fontsize=8)
    ax.axhline(cal.threshold, color="tab:red", lw=1, label=f"threshold {cal.threshold:.2f}")
    ax.set_ylabel("detection score (pilot statistic)")
    ax.set_title("model.detect on unmarked crops and on stegos after each condition")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
