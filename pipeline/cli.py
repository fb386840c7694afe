"""Command line: ``python -m pipeline COMMAND``. Run ``python -m pipeline --help`` for the list.

Exit codes: 0 success; 1 the command failed (bad configuration, unreadable input, internal error); 2 usage error
(click's own); 3 a batch job finished but some images failed (see the results Parquet); 4 `validate`: the model
does not meet the quality bar; 130 a batch job was interrupted (Ctrl-C; the same command resumes it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from pipeline.model.config import PRESETS

# Commands that live in their stage's package, imported only when used (so `--help` and `train` stay fast and a
# missing optional dependency of one command never breaks another).
LAZY_COMMANDS: dict[str, str] = {
    "embed": "pipeline.jobs.cli:embed",
    "extract": "pipeline.jobs.cli:extract",
    "benchmark": "pipeline.jobs.cli:benchmark",
    "evaluate": "pipeline.evaluate.cli:evaluate",
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
        click.echo("\nheld-out figures from the model cards (pipeline/weights/NAME.json), measured by")
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
    from pipeline.train.distill import DistillConfig, distill_light_score

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
    help="Which bar sets the exit code: `quality`, the quality bar (issue 3) alone; `published`, the quality bar "
    "and also the published-image bar (issue 23: JPEG, WebP, resize, shifts). Both are always measured and printed.",
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
    as_json: bool,
) -> None:
    """Check a model against the quality bar on photos it was not trained on.

    Uses the same split by photo name as `train`, so `--data` pointing at the training source gives its held-out
    photos. Prints cover PSNR/SSIM and secret PSNR clean and after each attack, 8-bit, and exits 0 when the bar is
    met, 4 when it is not. Beside it, the published-image bar: the secret PSNR after real JPEG 90/75/50, WebP 80,
    resizing to 0.5 and 0.75 and back, and shifts of 1-7 px (on the overlap); it sets the exit code only with
    `--bar published`.
    """
    import torch

    from pipeline.evaluate.published import PUBLISHED, PUBLISHED_BAR
    from pipeline.evaluate.quick import (
        BAR,
        QUICK_ATTACKS,
        bar_misses,
        quick_validation,
        verdict_failed,
        verdict_lines,
    )
    from pipeline.model.checkpoint import CheckpointError, load_model, with_registration
    from pipeline.train.data import load_photos, validation_pairs

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
    with torch.inference_mode():
        res = quick_validation(model, covers, secrets, noise_draws=noise_draws, published=True)
    res["images"] = len(imgs)
    res["bar_misses"] = bar_misses(res)
    failed = verdict_failed(res, bar)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"{len(imgs)} photos at {size}x{size}, 8-bit PNG-equivalent; bar in brackets")
        click.echo(f"  cover/stego PSNR   {res['psnr_cover']:6.2f} dB   [>= {BAR['psnr_cover']}]")
        click.echo(f"  cover/stego SSIM   {res['ssim_cover']:6.4f}      [>= {BAR['ssim_cover']}]")
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
        click.echo("published-image bar (issue 23; real codecs, 8-bit; shifts on the overlap)")
        for k in PUBLISHED:
            value = res["psnr_secret_" + k]
            note = f"  ({res['shift_alignment'][k]})" if k in res["shift_alignment"] else ""
            miss = "  MISS" if value < PUBLISHED_BAR[k] else ""
            click.echo(f"  secret PSNR {k:11}{value:6.2f} dB   [>= {PUBLISHED_BAR[k]}]{miss}{note}")
        met = "met" if res["published_margin"] >= 0 else "not met"
        click.echo(f"  margin to the published-image bar  {res['published_margin']:+.2f} ({met})")
        for line in verdict_lines(res, bar):
            click.echo(line)
    sys.exit(4 if failed else 0)


@main.command()
@click.option(
    "--data", required=True, help="Folder of photos (JPEG/PNG, any size) or WebDataset shards (dir or s3://)."
)
@click.option("--out", required=True, help="Run folder: checkpoints, logs, curves. An existing run there is resumed.")
@click.option(
    "--config", "preset", default="small", show_default=True, type=click.Choice(sorted(PRESETS)), help="Model preset."
)
@click.option("--baseline", type=click.Choice(["hinet", "unet"]), help="Train a baseline instead of SRIS-Net.")
@click.option(
    "--secrets", "num_secrets", default=1, show_default=True, type=click.IntRange(1, 4), help="Secrets per cover (K)."
)
@click.option("--channels", default=3, show_default=True, type=click.Choice(["1", "3"]), help="Image channels.")
@click.option("--no-lpfdd", is_flag=True, help="Ablation: Gaussian pyramid instead of the Laplacian decomposition.")
@click.option("--no-glem-global", is_flag=True, help="Ablation: GLEM without its global branch.")
@click.option("--no-sfm", is_flag=True, help="Ablation: add shallow and deep features instead of SFM.")
@click.option("--no-score-map", is_flag=True, help="Ablation: embed without the discriminator's score map.")
@click.option(
    "--no-realfake",
    is_flag=True,
    help="Ablation: the discriminator learns its score map alone (the texture target), without the real/fake task "
    "and without an adversarial loss for the embedder.",
)
@click.option(
    "--no-thumbnail-code", is_flag=True, help="Ablation: no analytic thumbnail code (the learned paths only)."
)
@click.option(
    "--residual-gain",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="The residual code: write what reveal still misses at the 2x2-block level into the stego's free "
    "checkerboard coefficients at this gain (secret units per coefficient); reveal adds it back where it survived. "
    "0 = off; the shipped model uses 0.06.",
)
@click.option(
    "--thumbnail-amplitude",
    type=click.FloatRange(1.0, 40.0),
    help="The thumbnail code's amplitude in grey levels [default: the preset's, 10]: with K secrets each has its "
    "own code, so K = 2 or 4 needs a lower one to keep the cover's quality.",
)
@click.option(
    "--detail-secrets",
    type=click.IntRange(1, 4),
    help="How many secrets (the first ones) the thumbnail code's 4x4 detail code carries, each in its own "
    "coefficient [default: 1]. More lifts those secrets' clean figures and costs the cover.",
)
@click.option(
    "--code-last",
    is_flag=True,
    help="Write the thumbnail code after the learned residual, cancelling it in the code's coefficients as the "
    "cover's, so the learned path cannot disturb the code (the K = 2 and K = 4 files use it).",
)
@click.option(
    "--base-layout",
    type=click.Choice(["low", "quiet"]),
    help="The base code's coefficients [default: low]: quiet puts secrets 3 and 4 where photos have little energy, "
    "so K = 3 or 4 costs the cover less (and resists blur and JPEG less).",
)
@click.option(
    "--deblur",
    is_flag=True,
    help="Reveal first estimates a 3x3 blur from the thumbnail code's pilots and undoes it (no weights); training "
    "reveals the attacked stegos the same way, so the learned path learns on what it will see.",
)
@click.option(
    "--base-tile",
    is_flag=True,
    help="The thumbnail code writes a DCT over each 4x4 group of 8x8 block means, each frequency at its own gain, "
    "instead of the means themselves (the same code power, spent where noise hurts least).",
)
@click.option(
    "--mirror",
    type=click.Choice(["pilot", "pattern", "none"]),
    help="How reveal recognises a mirrored stego: 'pilot' reads the thumbnail code's pilot (nothing added to the "
    "cover), 'pattern' has embed add a faint fixed pattern, 'none' does not look [default: the preset's, 'pattern'].",
)
@click.option(
    "--light-score",
    is_flag=True,
    help="Embed with a light score head distilled (during training) from the discriminator's score map: a faster "
    "embed engine (see `distill-score` for a trained model).",
)
@click.option("--crop", type=int, help="Training crop size [default: 128, 256 for the paper preset].")
@click.option("--batch", default=16, show_default=True)
@click.option("--steps", default=6000, show_default=True, help="Length of the schedule (cosine decay ends here).")
@click.option("--lr", default=1e-3, show_default=True)
@click.option(
    "--thumbnail-lr",
    type=click.FloatRange(0.0, 1.0),
    default=0.02,
    show_default=True,
    help="Learning-rate multiplier of the thumbnail code's linear maps; 0 keeps the analytic code fixed. Trained, "
    "the code drifts towards a cheaper cover and a noisier reading.",
)
@click.option("--cover-psnr-target", default=38.5, show_default=True, help="Training constraint on cover PSNR (dB).")
@click.option("--ssim-target", default=0.975, show_default=True, help="Training constraint on cover SSIM.")
@click.option(
    "--attack-mix",
    default="bar",
    show_default=True,
    type=click.Choice(["bar", "job", "wide", "blur", "noise", "noise-heavy", "noise-most", "published"]),
    help="Training distortions: 'bar' = the conditions the quality bar measures; 'job' = those plus the batch job's "
    "resampling of large images; 'wide' = stronger noise/blur/JPEG; 'blur' = 'job' weighted towards the mean and "
    "Gaussian filters (for models with --residual-gain, whose code carries the clean figure); 'noise' = 'blur' with "
    "more and stronger Gaussian noise (sigma 3-7); 'noise-heavy' = 'noise' with the filters' shares moved to noise; "
    "'noise-most' = noise in 70% of the batches; 'published' = JPEG at quality 50-95 and resizing down by "
    "0.4-0.9 in half the batches, the laboratory conditions in the rest.",
)
@click.option("--init-from", type=click.Path(exists=True), help="Start from this checkpoint's weights (fine-tuning).")
@click.option(
    "--lambda-ssim",
    type=click.FloatRange(min=0.01, max=1000.0),
    help="Start the SSIM constraint's weight here (a fine-tune otherwise keeps its training state's): lower trades "
    "cover SSIM for the secret.",
)
@click.option(
    "--lambda-cover",
    type=click.FloatRange(min=0.01, max=30.0),
    help="Start the cover-PSNR constraint's weight here (as --lambda-ssim).",
)
@click.option(
    "--reveal-only",
    is_flag=True,
    help="Train the reveal path alone (with --init-from: a trained model's embedder, score heads and discriminator "
    "stay frozen, so the cover figures cannot change).",
)
@click.option(
    "--synthetic-secrets",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Fraction of the training secrets drawn as random synthetic graphics (shapes, checkerboards, colour waves) "
    "instead of photo crops: for watermarks that are logos or patterns. Validation keeps photo secrets.",
)
@click.option("--w-guide", default=0.03, show_default=True, help="Weight of the score-map guidance loss.")
@click.option(
    "--scale-warmups",
    is_flag=True,
    help="Shrink the from-scratch warm-ups (discriminator, 8-bit rounding, fidelity ramp) in proportion to --steps "
    "below the default 6000, for short equal-budget runs (scripts/ablations.py).",
)
@click.option("--max-minutes", type=float, help="Stop (resumably) after this much wall time.")
@click.option(
    "--minutes",
    type=float,
    help="A wall-time schedule: the learning-rate decay and the target ramp run over this many minutes of training "
    "instead of --steps (ignored then), and the run ends there. For a machine lent for a fixed time.",
)
@click.option("--val-every", default=250, show_default=True, help="Validate every N steps.")
@_noise_draws_option(
    "--val-noise-draws",
    "Average the validation's noise figure over this many draws (as `validate --noise-draws`): a steadier "
    "figure for choosing best.pt, at one more reveal of the held-out photos per draw.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--threads", type=int, help="CPU threads for torch (default: all cores).")
@click.option("--seed", default=0, show_default=True)
def train(**kw) -> None:
    """Train SRIS-Net (or a baseline / ablation) on random crops of photos; resumes an existing run in OUT.

    Writes OUT/last.pt (full training state, every few minutes), OUT/best.pt and OUT/model.pt (model checkpoints
    that `load_model` and every other command accept), OUT/train_log.parquet, OUT/val_log.parquet and
    OUT/curves.png.
    """
    from pipeline.train.loop import TrainConfig
    from pipeline.train.loop import train as run_train

    overrides: dict = {"num_secrets": kw["num_secrets"], "channels": int(kw["channels"])}
    if kw["baseline"]:
        overrides["arch"] = kw["baseline"]
    for flag, field_name in (
        ("no_lpfdd", "lpfdd"),
        ("no_glem_global", "glem_global"),
        ("no_sfm", "sfm"),
        ("no_score_map", "score_map"),
        ("no_thumbnail_code", "thumbnail_code"),
    ):
        if kw[flag]:
            overrides[field_name] = False
    if kw["light_score"]:
        overrides["light_score"] = True
    if kw["residual_gain"]:
        overrides["residual_gain"] = kw["residual_gain"]
    if kw["thumbnail_amplitude"]:
        overrides["thumbnail_amplitude"] = kw["thumbnail_amplitude"]
    if kw["detail_secrets"]:
        overrides["detail_secrets"] = kw["detail_secrets"]
    if kw["code_last"]:
        overrides["code_last"] = True
    if kw["base_layout"]:
        overrides["base_layout"] = kw["base_layout"]
    if kw["deblur"]:
        overrides["deblur"] = True
    if kw["base_tile"]:
        overrides["base_tile"] = True
    if kw["mirror"]:
        overrides["mirror"] = kw["mirror"]
    crop = kw["crop"] or (256 if kw["preset"] == "paper" else 128)
    tc = TrainConfig(
        data=kw["data"],
        out=kw["out"],
        preset=kw["preset"],
        model_overrides=overrides,
        crop=crop,
        batch=kw["batch"],
        steps=kw["steps"],
        lr=kw["lr"],
        thumbnail_lr=kw["thumbnail_lr"],
        cover_psnr_target=kw["cover_psnr_target"],
        ssim_target=kw["ssim_target"],
        max_minutes=kw["max_minutes"],
        minutes=kw["minutes"],
        val_every=kw["val_every"],
        val_noise_draws=kw["val_noise_draws"],
        device=kw["device"],
        threads=kw["threads"],
        seed=kw["seed"],
        w_guide=kw["w_guide"],
        attack_mix=kw["attack_mix"],
        init_from=kw["init_from"],
        reveal_only=kw["reveal_only"],
        realfake=not kw["no_realfake"],
        synthetic_secrets=kw["synthetic_secrets"],
        lambda_cover_start=kw["lambda_cover"],
        lambda_ssim_start=kw["lambda_ssim"],
    )
    if tc.works_from_step_zero:
        tc = tc.without_warmups()
    elif kw["scale_warmups"]:
        tc = tc.warmups_scaled()
    try:
        run_train(tc)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
