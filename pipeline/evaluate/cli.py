"""``python -m pipeline evaluate``: the paper's tables for one or more checkpoints on a folder (or shards) of photos;
``python -m pipeline calibrate-detection``: the threshold of ``model.detect`` and its rates, into a checkpoint."""

from __future__ import annotations

import shlex
import sys

import click


def _capacity(values: tuple[str, ...]) -> dict[int, str]:
    out: dict[int, str] = {}
    for v in values:
        k, sep, path = v.partition("=")
        if not sep or not k.strip().isdigit() or int(k) not in (2, 3, 4) or not path:
            raise click.BadParameter(
                f"expected K=PATH with K in 2, 3, 4; got {v!r}", param_hint="--capacity-checkpoint"
            )
        if int(k) in out:
            raise click.BadParameter(f"K={k} given twice", param_hint="--capacity-checkpoint")
        out[int(k)] = path
    return out


@click.command()
@click.option(
    "--data", required=True, help="Folder of photos (JPEG/PNG, any size) or WebDataset shards (dir or s3://)."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder (created; files replaced).")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="[LABEL=]PATH",
    help="Model to evaluate; repeat for more rows. Default: the shipped model.",
)
@click.option(
    "--capacity-checkpoint",
    "capacity",
    multiple=True,
    metavar="K=PATH",
    help="Checkpoint trained to hide K (2, 3 or 4) secrets, for the capacity table; repeatable.",
)
@click.option("--size", default=256, show_default=True, help="Image size N: shorter side resized to N, centre crop.")
@click.option("--quick", is_flag=True, help="A subset (8 photos, 5 XuNet epochs, 2 sample grids): a quick check.")
@click.option(
    "--subset",
    type=click.Choice(["all", "validation", "train"]),
    default="all",
    show_default=True,
    help="Photos training held out (validation) or used (train), by the training loop's name hash.",
)
@click.option("--limit", type=click.IntRange(min=2), help="Use only the first N photos (by name).")
@click.option("--splits", default=5, show_default=True, type=click.IntRange(min=5), help="Steganalysis splits.")
@click.option(
    "--xunet-epochs", default=20, show_default=True, type=click.IntRange(min=1), help="XuNet training epochs."
)
@click.option(
    "--stega-tile",
    default=128,
    show_default=True,
    type=click.IntRange(min=0),
    help="Steganalysis samples: tiles of this size (0: whole images).",
)
@click.option("--samples", default=4, show_default=True, type=click.IntRange(min=0), help="Sample grids per model.")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(min=1), help="Images per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--threads", type=int, help="CPU threads for torch (default: all cores).")
@click.option("--seed", default=0, show_default=True)
def evaluate(**kw) -> None:
    """Reproduce the paper's tables (hiding quality, steganalysis, robustness, capacity) on a photo set.

    Writes OUT/report.md, one Parquet per table (quality, security, robustness, capacity: a row per image and
    condition), OUT/run.json and PNG figures (a grid per sample image, robustness per attack).

    \b
    Example:
      python -m pipeline evaluate --data PHOTOS --subset validation --out docs/evaluation \\
          --checkpoint SRIS-Net=runs/small-v1/best.pt --checkpoint U-Net=runs/unet-v1/best.pt
    """
    import torch

    from pipeline.evaluate.run import EvalConfig, run_evaluation
    from pipeline.model.checkpoint import CheckpointError

    if kw["threads"]:
        torch.set_num_threads(kw["threads"])
    cfg = EvalConfig(
        data=kw["data"],
        out=kw["out"],
        checkpoints=list(kw["checkpoints"]),
        capacity=_capacity(kw["capacity"]),
        size=kw["size"],
        quick=kw["quick"],
        subset=kw["subset"],
        limit=kw["limit"],
        batch=kw["batch"],
        device=kw["device"],
        seed=kw["seed"],
        splits=kw["splits"],
        xunet_epochs=kw["xunet_epochs"],
        stega_tile=kw["stega_tile"],
        samples=kw["samples"],
        command="python -m pipeline evaluate " + shlex.join(sys.argv[sys.argv.index("evaluate") + 1 :])
        if "evaluate" in sys.argv
        else "",
    )
    try:
        report = run_evaluation(cfg)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"report: {report}")


@click.command("calibrate-detection")
@click.option("--data", required=True, help="Folder of photos or WebDataset shards: the unmarked images (all of them).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Model checkpoint file, or a shipped model by name (k1, k2, k4) [default: k1].",
)
@click.option(
    "--crops", default=4, show_default=True, type=click.IntRange(0), help="Random crops per photo (and its centre)."
)
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096), help="Crop size N.")
@click.option(
    "--step",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The threshold is rounded up to a multiple of this.",
)
@click.option("--batch", default=16, show_default=True, type=click.IntRange(1), help="Images per detect call.")
@click.option("--seed", default=0, show_default=True, help="Seed of the crops.")
@click.option(
    "--out",
    default="detection.parquet",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Parquet of every score (a box plot .png beside it).",
)
@click.option(
    "--write-threshold",
    is_flag=True,
    help='Write the threshold and the measured rates into the checkpoint\'s metadata (meta["detection"]), where '
    "extract's `marked` reads it. The weights stay as they are.",
)
@click.option("--threads", type=int, help="CPU threads for torch [default: torch's choice].")
def calibrate_detection(
    data: str,
    checkpoint: str | None,
    crops: int,
    size: int,
    step: float,
    batch: int,
    seed: int,
    out: str,
    write_threshold: bool,
    threads: int | None,
) -> None:
    """Calibrate a model's mark detector: its scores on unmarked crops of the photos and on their stegos, after
    each distortion; the threshold above every unmarked score (no false positive on the set; the 95% upper bound on
    the rate is 3 / n), and the rate at which it finds the mark after each condition.

    \b
    Example (how the shipped models' thresholds were written):
      python -m pipeline calibrate-detection --data PHOTOS --checkpoint k2 --write-threshold
    """
    import torch

    from pipeline.evaluate.detection import calibrate, write_scores
    from pipeline.io.photos import load_photos
    from pipeline.model.checkpoint import CheckpointError, load_model, resolve_checkpoint, update_meta
    from pipeline.runtime.cli import check_checkpoint_exists

    if threads:
        torch.set_num_threads(threads)
    check_checkpoint_exists(checkpoint)
    try:
        model = load_model(checkpoint)
        train, val, _, _ = load_photos(data, model.config.channels, 0.2)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    cal = calibrate(model, train + val, crops, size, seed, step, batch)
    highest = max(r["score"] for r in cal.rows if r["kind"] == "unmarked")
    click.echo(f"unmarked images: {cal.unmarked}, max score {highest:.2f}; threshold {cal.threshold:.2f}")
    bound = 3 / cal.unmarked
    click.echo(f"false positives at the threshold: 0 of {cal.unmarked} (95% upper bound on the rate {bound:.1e})")
    for line in cal.table():
        click.echo(line)
    if write_threshold:
        path = resolve_checkpoint(checkpoint)
        update_meta(path, detection=cal.record())
        click.echo(f"wrote the threshold into {path}")
    parquet, png = write_scores(cal, out)
    click.echo(f"wrote {parquet} and {png}")
