"""Command line: ``python -m pipeline COMMAND``. Run ``python -m pipeline --help`` for the list.

Exit codes: 0 success; 1 the command failed (bad configuration, unreadable input, internal error); 2 usage error
(click's own); 3 a batch job finished but some images failed (see the results Parquet); 4 `validate`: the model
does not meet the quality bar; 130 a batch job was interrupted (Ctrl-C; the same command resumes it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

# NumPy's OpenBLAS in one thread unless the user says otherwise, set before NumPy loads: the commands' NumPy
# products are small (the digital layer's 8 x 8 block transforms, a few hundred a batch), where OpenBLAS's threads
# only spin between calls, and the batch jobs run their own threads on the cores. On 288 images of 256 px, 2 cores,
# the embed job took 6% less time (docs/model.md). torch, OpenVINO and ONNX Runtime keep their own thread pools.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from pipeline.model.config import PRESETS

# Commands that live in their stage's package, imported only when used (so `--help` and `train` stay fast and a
# missing optional dependency of one command never breaks another).
LAZY_COMMANDS: dict[str, str] = {
    "embed": "pipeline.jobs.cli:embed",
    "extract": "pipeline.jobs.cli:extract",
    "benchmark": "pipeline.jobs.cli:benchmark",
    "evaluate": "pipeline.evaluate.cli:evaluate",
    "calibrate-detection": "pipeline.evaluate.cli:calibrate_detection",
    "engines": "pipeline.runtime.cli:engines",
    "build-engines": "pipeline.runtime.cli:build_engines",
}


def _noise_draws_option(flag: str, text: str) -> Callable[[Callable], Callable]:
    """How many seeded draws of sigma-5 noise a noise figure averages (``quick_validation(noise_draws=...)``)."""
    return click.option(flag, default=1, show_default=True, type=click.IntRange(1, 1000), help=text)


def _importable(target: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(target.split(":")[0]) is not None
    except ModuleNotFoundError:
        return False


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *(n for n, t in LAZY_COMMANDS.items() if _importable(t))])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="sris-pipeline")
def main() -> None:
    """sris-pipeline: hide secret images in cover images with SRIS-Net, at scale.

    \b
    Typical use:
      python -m pipeline embed --shards s3://bucket/in --out s3://bucket/out --secret logo.png
      python -m pipeline extract --shards s3://bucket/out --out ./revealed
      python -m pipeline train --data ./photos --config small --out runs/mine
      python -m pipeline evaluate --data ./photos --out report/
    """


@main.command("model-info")
@click.option(
    "--config", "preset", type=click.Choice(sorted(PRESETS)), multiple=True, help="Presets to describe (default: all)."
)
@click.option("--size", default=256, show_default=True, help="Image size for the FLOP count.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--write-card",
    type=click.Choice(["k1", "k2", "k4"]),
    help="Maintainers: (re)write this shipped model's card beside its weights, with --held-out's figures.",
)
@click.option(
    "--held-out",
    type=click.Path(exists=True, dir_okay=False),
    help="With --write-card: the output of `python -m pipeline validate --data PHOTOS --checkpoint NAME --json`.",
)
def model_info(preset: tuple[str, ...], size: int, as_json: bool, write_card: str | None, held_out: str | None) -> None:
    """The shipped models (by name, with K, the secrets each cover holds) and their cards' held-out figures, then the
    parameter counts and FLOPs of each preset, per part (embed, reveal, discriminator).

    \b
    A shipped model's name works wherever a checkpoint does:
      python -m pipeline embed --checkpoint k2 --secret a.png --secret b.png ...
      load_model("k2")
    """
    from pipeline.model.card import HELD_OUT_COMMAND
    from pipeline.model.info import CARD_FIGURES, describe, shipped_models

    if write_card or held_out:
        if not (write_card and held_out):
            raise click.UsageError("--write-card and --held-out go together")
        from pathlib import Path

        from pipeline.model.info import write_card as write

        click.echo(f"wrote {write(write_card, json.loads(Path(held_out).read_text()))}")
        return
    shipped = shipped_models()
    rows = [describe(name, size) for name in (preset or sorted(PRESETS, key=list(PRESETS).index))]
    if as_json:
        click.echo(json.dumps({"shipped": shipped, "presets": rows}, indent=1))
        return
    click.echo(f"{'name':>5} {'K':>2} {'params':>9} {'sha256':>13}  file")
    for r in shipped:
        if r["installed"]:
            click.echo(f"{r['name']:>5} {r['num_secrets']:>2} {r['params']:>9,} {r['sha256']:>13}  {r['file']}")
        else:
            click.echo(f"{r['name']:>5} {'':>2} {'':>9} {'':>13}  {r['file']} ({r['note']})")
    carded = [r for r in shipped if r.get("held_out")]
    if carded:
        click.echo("\nheld-out figures from the model cards (pipeline/weights/*.json), measured by")
        click.echo(f"  {HELD_OUT_COMMAND.format(name='NAME')}")
        click.echo(f"{'name':>5} {'photos':>6} " + " ".join(f"{h:>11}" for h in CARD_FIGURES.values()) + "  threshold")
        for r in carded:
            fig = r["held_out"]
            cells = " ".join(f"{fig[k]:>11.4f}" if k == "ssim_cover" else f"{fig[k]:>11.2f}" for k in CARD_FIGURES)
            click.echo(f"{r['name']:>5} {fig['images']:>6} {cells}  {r['detection_threshold']:>9}")
    click.echo()
    header = ("preset", "params", "embed", "reveal", "discrim.", "GFLOPs embed", "GFLOPs reveal")
    widths = (8, 10, 9, 9, 9, 13, 14)
    click.echo(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)) + f"  (at {size}x{size})")
    for r in rows:
        cells = (
            f"{r['preset']:>8}",
            f"{r['params']:>10,}",
            f"{r['params_embed']:>9,}",
            f"{r['params_reveal']:>9,}",
            f"{r['params_discriminator']:>9,}",
            f"{r['gflops_embed']:>13.2f}",
            f"{r['gflops_reveal']:>14.2f}",
        )
        click.echo(" ".join(cells))


@main.command("distill-score")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Trained SRIS-Net: a file, or a shipped model by name (k1, k2, k4) [default: k1].",
)
@click.option("--data", required=True, help="Folder of photos or WebDataset shards (the training data source).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (with the head).")
@click.option("--steps", default=2500, show_default=True, help="Distillation steps.")
@click.option("--batch", default=16, show_default=True, help="Crops per step.")
@click.option("--threads", type=int, help="CPU threads for torch [default: torch's choice].")
@click.option("--half/--no-half", default=True, show_default=True, help="Store the weights in fp16.")
def distill_score(
    checkpoint: str | None, data: str, out: str, steps: int, batch: int, threads: int | None, half: bool
) -> None:
    """Add a light score head to a trained SRIS-Net, distilled from its discriminator's score map.

    The exported embed then runs this head (on the cover folded by 4, ~45 MFLOPs at 256 px) instead of the
    discriminator's trunk (~180 MFLOPs at full resolution); every other weight is kept as it is. Prints how far
    the head's map is from the discriminator's on the held-out photos; run `validate` on OUT to see the figures.
    """
    import torch

    from pipeline.model.checkpoint import CheckpointError, load_model, save_checkpoint
    from pipeline.runtime.cli import check_checkpoint_exists
    from pipeline.train.distill import DistillConfig, distill_light_score

    check_checkpoint_exists(checkpoint)
    if threads:
        torch.set_num_threads(threads)
    try:
        model = load_model(checkpoint)
        res = distill_light_score(model, DistillConfig(data=data, steps=steps, batch=batch))
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    meta = {**getattr(model, "checkpoint_meta", {}), "light_score": {**res, "steps": steps, "batch": batch}}
    save_checkpoint(model, out, meta=meta, half=half)
    click.echo(json.dumps({k: round(v, 5) for k, v in res.items()}))
    click.echo(f"wrote {out}")


def _weighted_checkpoint(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[float, str]]:
    out = []
    for v in values:
        w, sep, path = v.partition("=")
        try:
            weight = float(w)
        except ValueError:
            weight = -1.0
        if not sep or not path or weight < 0:
            raise click.BadParameter(f"expected WEIGHT=CHECKPOINT with a weight >= 0, got {v!r}", ctx, param)
        out.append((weight, path))
    return out


@main.command()
@click.argument("keyfile", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing file (the marks made with its key become unreadable).")
def keygen(keyfile: str, force: bool) -> None:
    """Write a new digital-layer key to KEYFILE: 32 random bytes as 64 hex characters, readable by its owner only.

    Marks written with the key (embed --key-file KEYFILE) are read only with it; keep it as you would a password.
    The jobs record only its id (a hash prefix), printed here.

    
    Example:
      python -m pipeline keygen ~/.config/sris/job.key
      python -m pipeline embed --shards in/ --out out/ --secret logo.png --key-file ~/.config/sris/job.key
    """
    from pathlib import Path

    from pipeline.model.digital.keys import generate_key_file

    if Path(keyfile).is_dir():
        raise click.UsageError(f"KEYFILE {keyfile} is a folder")
    try:
        key = generate_key_file(keyfile, overwrite=force)
    except FileExistsError:
        raise click.UsageError(
            f"KEYFILE {keyfile} exists: a key is never replaced silently (--force replaces it)"
        ) from None
    except OSError as exc:
        click.echo(f"error: {keyfile}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {keyfile} (key id {key.key_id}; readable by its owner only)")


@main.command("average-checkpoints")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True, metavar="WEIGHT=CHECKPOINT...", callback=_weighted_checkpoint)
def average_checkpoints(out: str, sources: list[tuple[float, str]]) -> None:
    """Write OUT, the weighted mean of the weights of checkpoints of one architecture (fp16), a weight per file.

    For fine-tunes of one start that ended at different points of a trade-off (cover SSIM against the secret after
    noise): the mean lands between them. Integer buffers come from the first file; OUT's metadata names the sources
    and their weights.

    \b
    Example:
      python -m pipeline average-checkpoints mixed.pt 0.65=runs/a/model.pt 0.35=runs/b/model.pt
    """
    from pipeline.model.checkpoint import CheckpointError
    from pipeline.model.checkpoint import average_checkpoints as average
    from pipeline.runtime.cli import check_checkpoint_exists

    for _, path in sources:
        check_checkpoint_exists(path)
    weights, paths = [w for w, _ in sources], [p for _, p in sources]
    try:
        average(paths, weights, out=out)
    except (CheckpointError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out}: " + ", ".join(f"{w:g} x {p}" for w, p in sources))


@main.command()
@click.option("--data", required=True, help="Folder of photos or WebDataset shards (the training data source).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Model checkpoint file, or a shipped model by name (k1, k2, k4) [default: k1].",
)
@click.option("--size", default=256, show_default=True, help="Evaluation size N (shorter side resized, centre crop).")
@click.option(
    "--val-fraction", default=0.2, show_default=True, help="Held-out fraction, split by photo name (as train)."
)
@click.option("--all-photos", is_flag=True, help="Use every photo, not only the held-out ones.")
@click.option(
    "--register",
    is_flag=True,
    help="Measure the model with registration on (reveal first finds the thumbnail code's grid and a mirror from its "
    "pilot and moves the stego back into register), whatever its checkpoint says.",
)
@click.option(
    "--graphics-secrets",
    is_flag=True,
    help="Hide random synthetic graphics (logos, patterns; a fixed seed no training run uses) instead of the next "
    "photos: how a model reads watermark-like secrets. The bar is defined on photo secrets.",
)
@_noise_draws_option(
    "--noise-draws",
    "Average the noise figure over this many independent draws of the noise (seeds 0, 1, ...) and print its "
    "standard error (one draw of the noise moves the figure by as much as models are compared on). 1 is the bar's "
    "single draw (seed 0).",
)
@click.option(
    "--bar",
    "bar",
    type=click.Choice(["quality", "published"]),
    default="quality",
    show_default=True,
    help="Which bar sets the exit code: `quality`, the quality bar alone; `published`, the quality bar and also the "
    "published-image bar (JPEG, WebP, resize, shifts). Both are always measured and printed.",
)
@click.option(
    "--family",
    is_flag=True,
    help="Also measure conditions of the same kinds that no bar lists: JPEG 95/85/60/40, WebP 90/70, resizing to "
    "0.9 and 0.6, shifts of 12 and 24 px, crops keeping 95% and 85% (printed, no bar).",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "openvino", "tensorrt"], case_sensitive=False),
    default="torch",
    show_default=True,
    help="What embeds and reveals: the torch model, or a compiled engine of it (built on first use), to measure "
    "what an engine precision changes.",
)
@click.option("--precision", help="The engine's precision: fp32, bf16, fp16, int8 [default: the backend's choice].")
@click.option(
    "--engines-dir", default="engines", show_default=True, help="Folder of built engines (with --backend).", type=str
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate(
    data: str,
    checkpoint: str | None,
    size: int,
    val_fraction: float,
    all_photos: bool,
    register: bool,
    graphics_secrets: bool,
    noise_draws: int,
    bar: str,
    family: bool,
    backend: str,
    precision: str | None,
    engines_dir: str,
    as_json: bool,
) -> None:
    """Check a model against the quality bar on photos it was not trained on.

    Uses the same split by photo name as `train`, so `--data` pointing at the training source gives its held-out
    photos. Prints cover PSNR/SSIM and secret PSNR clean and after each attack, 8-bit, and exits 0 when the bar is
    met, 4 when it is not. Beside it, the published-image bar: the secret PSNR after real JPEG 90/75/50, WebP 80,
    resizing to 0.5 and 0.75 and back, and shifts of 1-7 px (on the overlap); it sets the exit code only with
    `--bar published`. A model with the digital layer is read with the SRIS_KEY environment variable's key, or the
    public key.
    """
    import torch

    from pipeline.core.photos import validation_pairs
    from pipeline.evaluate.published import FAMILY, PUBLISHED, PUBLISHED_BAR
    from pipeline.evaluate.quick import (
        BAR,
        QUICK_ATTACKS,
        bar_misses,
        quick_validation,
        verdict_failed,
        verdict_lines,
    )
    from pipeline.io.photos import load_photos
    from pipeline.model.checkpoint import CheckpointError, load_model, with_registration
    from pipeline.runtime.cli import check_checkpoint_exists

    check_checkpoint_exists(checkpoint)
    try:
        model = load_model(checkpoint)
        if register:
            model = with_registration(model)
        train_imgs, val_imgs, _, _ = load_photos(data, model.config.channels, val_fraction)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    imgs = train_imgs + val_imgs if all_photos else val_imgs
    if len(imgs) < 2:
        click.echo("error: need at least two photos (each hides the next)", err=True)
        sys.exit(1)
    covers, secrets = validation_pairs(imgs, size, model.config.num_secrets)
    if graphics_secrets:
        from pipeline.train.graphics import VALIDATION_SEED, GraphicsSampler

        drawn = GraphicsSampler(size, model.config.channels, seed=VALIDATION_SEED).batch(
            len(covers) * model.config.num_secrets
        )
        secrets = drawn.reshape(secrets.shape)
    measured = model
    if backend != "torch" or precision:
        measured = _engine_model(model, backend, precision, size, engines_dir)
    with torch.inference_mode():
        res = quick_validation(measured, covers, secrets, noise_draws=noise_draws, published=True, family=family)
    res["images"] = len(imgs)
    if measured is not model:
        res["engine"] = {"backend": measured.engine.info.backend, "precision": measured.engine.info.precision}
    res["bar_misses"] = bar_misses(res)
    failed = verdict_failed(res, bar)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"{len(imgs)} photos at {size}x{size}, 8-bit PNG-equivalent; bar in brackets")
        click.echo(f"  cover/stego PSNR   {res['psnr_cover']:6.2f} dB   [>= {BAR['psnr_cover']}]")
        click.echo(f"  cover/stego SSIM   {res['ssim_cover']:6.4f}      [>= {BAR['ssim_cover']}]")
        click.echo(
            f"  flat blocks PSNR   {res['psnr_cover_flat']:6.2f} dB   (worst image {res['psnr_cover_flat_worst']:.2f}; "
            "cover blocks of luma std < 1.5)"
        )
        click.echo(f"  secret PSNR clean  {res['psnr_secret']:6.2f} dB   [>= {BAR['psnr_secret']}]")
        for k in ("mean3", "gauss1", "sharpen", "noise5", "hflip"):
            spread = (
                f"  (mean of {noise_draws} draws +- {res['psnr_secret_noise5_se']:.2f})"
                if k == "noise5" and noise_draws > 1
                else ""
            )
            click.echo(
                f"  secret PSNR {k:7}{res['psnr_secret_' + k]:6.2f} dB   [>= {BAR['psnr_secret_attacked']}]{spread}"
            )
        click.echo(f"  margin to the bar  {res['margin']:+.2f} ({'met' if res['margin'] >= 0 else 'not met'})")
        if model.config.num_secrets > 1:
            names = ("", *(f"_{n}" for n in QUICK_ATTACKS))
            click.echo(f"  each secret: clean / {' / '.join(QUICK_ATTACKS)} (dB)")
            for j in range(1, model.config.num_secrets + 1):
                click.echo(f"    secret {j}: " + " / ".join(f"{res[f'psnr_secret{j}{n}']:.2f}" for n in names))
        click.echo("published-image bar (real codecs, 8-bit; shifts on the overlap)")
        for k in PUBLISHED:
            value = res["psnr_secret_" + k]
            note = f"  ({res['shift_alignment'][k]})" if k in res["shift_alignment"] else ""
            miss = "  MISS" if value < PUBLISHED_BAR[k] else ""
            click.echo(f"  secret PSNR {k:11}{value:6.2f} dB   [>= {PUBLISHED_BAR[k]}]{miss}{note}")
        met = "met" if res["published_margin"] >= 0 else "not met"
        click.echo(f"  margin to the published-image bar  {res['published_margin']:+.2f} ({met})")
        if family:
            click.echo("the same kinds of condition, other parameters (no bar)")
            for k in FAMILY:
                click.echo(f"  secret PSNR {k:11}{res['psnr_secret_' + k]:6.2f} dB")
        for line in verdict_lines(res, bar):
            click.echo(line)
    sys.exit(4 if failed else 0)


def _engine_model(model: object, backend: str, precision: str | None, size: int, engines_dir: str) -> object:
    """The model's engine for ``validate --backend``, seen as a model (``EngineAsModel``); exit 1 when it cannot
    load here."""
    from pipeline.runtime import load_engine
    from pipeline.runtime.as_model import EngineAsModel
    from pipeline.runtime.errors import EngineError

    try:
        engine = load_engine(backend, model, size, precision=precision, engines_dir=engines_dir, notify=_say)
    except (EngineError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    return EngineAsModel(engine, model)


def _say(message: str) -> None:
    click.echo(message, err=True)


def _train_options(fn: Callable) -> Callable:
    """The ``train`` options, generated from the fields they set: ``TrainConfig``'s and the model config's (the
    model overrides), each field's option in its metadata (``pipeline/cli_fields.py``)."""
    from pipeline.cli_fields import click_options

    return click_options(_train_fields())(fn)


def _train_fields() -> list:
    from pipeline.cli_fields import field_options
    from pipeline.model.config import ModelConfig
    from pipeline.train.config import TrainConfig

    train, model = field_options(TrainConfig), field_options(ModelConfig)
    return train[:3] + model + train[3:]  # --data, --out, --config, then the model's options, then the run's


@main.command()
@_train_options
@click.option(
    "--scale-warmups",
    is_flag=True,
    help="Shrink the from-scratch warm-ups (discriminator, 8-bit rounding, fidelity ramp) in proportion to --steps "
    "below the default 6000, for short equal-budget runs (research/ablations.py).",
)
def train(**kw) -> None:
    """Train SRIS-Net (or a baseline / ablation) on random crops of photos; resumes an existing run in OUT.

    Writes OUT/last.pt (full training state, every few minutes), OUT/best.pt and OUT/model.pt (model checkpoints
    that `load_model` and every other command accept), OUT/train_log.parquet, OUT/val_log.parquet and
    OUT/curves.png.
    """
    from pipeline.cli_fields import field_options
    from pipeline.model.config import SHORT_NAMES, ModelConfig
    from pipeline.train.config import TrainConfig
    from pipeline.train.loop import train as run_train

    short = {path: name for name, path in SHORT_NAMES.items()}
    overrides = {short[o.path]: o.field_value(kw[o.dest]) for o in field_options(ModelConfig) if o.given(kw[o.dest])}
    run = {}
    for o in field_options(TrainConfig):
        value = kw[o.dest]
        if o.is_flag:
            if value:  # a flag not given leaves the field's default
                run[o.path] = o.flag_value
        elif value is not None:
            run[o.path] = o.field_value(value)
    run["crop"] = run.get("crop") or (256 if run["preset"] == "paper" else 128)
    tc = TrainConfig(**run, model_overrides=overrides)
    if tc.works_from_step_zero:
        tc = tc.without_warmups()
    elif kw["scale_warmups"]:
        tc = tc.warmups_scaled()
    try:
        run_train(tc)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
