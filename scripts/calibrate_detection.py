"""Calibrate ``model.detect``: its scores on unmarked photo crops (the null), a threshold, and the rate it finds marks.

Unmarked: ``--crops`` random 256 px crops of every photo (and the centre square), each as it is and after every
condition below; marked: the same crops used as covers (photo i hides photo i+1), stego 8-bit, after the same
conditions. The threshold is the smallest value above every unmarked score, rounded up to ``--step``: its measured
false-positive rate on this set is 0, and the report gives the set's size and the one-sided 95% upper bound on the
rate (3 / n). Writes one Parquet row per image (``--out``) and prints the table; ``--write-threshold`` also writes
the threshold and the measured rates into the checkpoint's metadata (``meta["detection"]``), where ``model.detect``'s
callers (the extract job's ``marked`` column) read it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.core import distortions as D
from pipeline.core.photos import square_crops
from pipeline.evaluate.published import PUBLISHED
from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.model.checkpoint import resolve_checkpoint, update_meta

LAB = {
    "clean": lambda x: x,
    "hflip": D.hflip,
    "mean3": D.mean_filter,
    "gauss1": lambda x: D.gaussian_filter(x, 1.0),
    "sharpen": D.sharpen,
    "noise5": lambda x: D.gaussian_noise(x, 5.0, torch.Generator().manual_seed(0)),
}
CONDITIONS = {**LAB, **PUBLISHED}


def scores(model: torch.nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.detect(images[i : i + batch]) for i in range(0, len(images), batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of photos")
    ap.add_argument("--checkpoint", help="model checkpoint or shipped name (k1, k2, k4) [default: k1]")
    ap.add_argument("--crops", type=int, default=4, help="random crops per photo (besides the centre square)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--step", type=float, default=0.5, help="the threshold is rounded up to a multiple of this")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/evaluation/detection.parquet", help="Parquet; a PNG of the scores beside it")
    ap.add_argument("--write-threshold", action="store_true", help="write the threshold into the checkpoint's meta")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.checkpoint)
    train, val, _, _ = load_photos(args.data, model.config.channels, 0.2)
    covers = square_crops(train + val, args.crops, args.size, args.seed, centre=True)
    k = model.config.num_secrets  # photo i hides photos i+1 .. i+K
    secrets = torch.cat([covers.roll(j, dims=0) for j in range(1, k + 1)], dim=1)
    with torch.inference_mode():
        stegos = torch.cat(
            [D.quantize(model.embed(covers[i : i + 8], secrets[i : i + 8])) for i in range(0, len(covers), 8)]
        )
    rows = []
    for name, f in tqdm(CONDITIONS.items(), desc="conditions", unit="cond"):
        for marked, images in (("unmarked", covers), ("marked", stegos)):
            z = scores(model, D.quantize(f(images)), args.batch)
            rows += [{"condition": name, "kind": marked, "score": float(s)} for s in z]
    null = [r["score"] for r in rows if r["kind"] == "unmarked"]
    threshold = math.ceil(max(null) / args.step + 1e-9) * args.step
    print(f"unmarked images: {len(null)}, max score {max(null):.2f}; threshold {threshold:.2f}")
    print(f"false positives at the threshold: 0 of {len(null)} (95% upper bound on the rate {3 / len(null):.1e})")
    print("| condition | unmarked max | marked min | marked median | true-positive rate |\n|---|---|---|---|---|")
    rates = {}
    for name in CONDITIONS:
        u = [r["score"] for r in rows if r["condition"] == name and r["kind"] == "unmarked"]
        m = sorted(r["score"] for r in rows if r["condition"] == name and r["kind"] == "marked")
        rates[name] = sum(s >= threshold for s in m) / len(m)
        print(f"| {name} | {max(u):.2f} | {m[0]:.2f} | {m[len(m) // 2]:.2f} | {rates[name]:.4f} |")
    if args.write_threshold:
        record = detection_record(threshold, len(null), rates, args)
        path = resolve_checkpoint(args.checkpoint)
        update_meta(path, detection=record)
        print(f"wrote the threshold into {path}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.append_column("threshold", pa.array([threshold] * len(rows))), out)
    plot(rows, threshold, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def detection_record(threshold: float, unmarked: int, rates: dict[str, float], args: argparse.Namespace) -> dict:
    """What the checkpoint's ``meta["detection"]`` holds: the threshold and how it was measured."""
    return {
        "threshold": threshold,
        "unmarked_images": unmarked,
        "false_positives": 0,
        "false_positive_rate_95_upper": 3 / unmarked,
        "true_positive_rate": rates,
        "size": args.size,
        "crops_per_photo": args.crops,
        "seed": args.seed,
        "measured_by": "scripts/calibrate_detection.py",
    }


def plot(rows: list[dict], threshold: float, path: Path) -> None:
    """The unmarked scores (all conditions) against the marked ones per condition, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(CONDITIONS)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    null = [r["score"] for r in rows if r["kind"] == "unmarked"]
    marked = [[r["score"] for r in rows if r["kind"] == "marked" and r["condition"] == n] for n in names]
    ax.boxplot([null, *marked], showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(names) + 2), ["unmarked\n(all)", *names], rotation=60, fontsize=8)
    ax.axhline(threshold, color="tab:red", lw=1, label=f"threshold {threshold:.2f}")
    ax.set_ylabel("detection score (pilot statistic)")
    ax.set_title("model.detect on unmarked crops and on stegos after each condition")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
