"""Click commands ``engines`` (what is built, what this machine runs) and ``build-engines`` (registered lazily by
pipeline/cli.py; ``python build_engines.py`` runs the same command)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.model.shipped import resolve_checkpoint
from pipeline.runtime.build import DEFAULT_BATCH_RANGE, TARGETS


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def checkpoint_message(checkpoint: str | None, exc: Exception) -> str:
    """One line for a checkpoint that cannot be used (torch's own error can be a paragraph)."""
    if checkpoint is None:  # the shipped model
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "the shipped model cannot be read"
    if not resolve_checkpoint(checkpoint).exists():
        return missing_checkpoint_message(checkpoint)
    cause = exc.__cause__
    detail = f" ({str(cause).strip().splitlines()[0]})" if isinstance(cause, ValueError) and str(cause).strip() else ""
    return f"--checkpoint {checkpoint}: not an sris-pipeline checkpoint{detail}"


def check_checkpoint_exists(checkpoint: str | None) -> None:
    """A --checkpoint path that does not exist is a usage error (exit 2), as click's own path checks give; a shipped
    model's name (``k2``) is its file in the package."""
    if checkpoint is not None and not resolve_checkpoint(checkpoint).exists():
        raise click.UsageError(missing_checkpoint_message(checkpoint))


def missing_checkpoint_message(checkpoint: str) -> str:
    """A --checkpoint that names nothing: a bare word (``k3``) was meant as a shipped model's name, so the names are
    listed; a path (``runs/x.pt``) is only said to be missing."""
    from pipeline.model.checkpoint import SHIPPED

    if "/" in checkpoint or os.sep in checkpoint or "." in checkpoint:
        return f"--checkpoint {checkpoint}: no such file"
    return f"--checkpoint {checkpoint}: no such file, nor a shipped model (shipped: {', '.join(SHIPPED)})"


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _batch_range(value: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected MIN,OPT,MAX (e.g. 1,8,32), got {value!r}") from None
    if not 1 <= lo <= opt <= hi:
        raise click.BadParameter(f"need 1 <= MIN <= OPT <= MAX, got {value!r}")
    return lo, opt, hi


@click.command("build-engines")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Model checkpoint file, or a shipped model by name (k1, k2, k4) [default: k1].",
)
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096), help="Image size N.")
@click.option(
    "--targets",
    default=",".join(TARGETS),
    show_default=True,
    help="Comma-separated: onnx, openvino, tensorrt (TensorRT needs CUDA and torch-tensorrt; skipped otherwise).",
)
@click.option(
    "--precision",
    "precisions",
    help="Comma-separated fp32, bf16, fp16 [default per target: onnx fp32; openvino fp32 (+bf16 where the CPU has "
    "it); tensorrt fp16].",
)
@click.option("--out", default="engines", show_default=True, type=click.Path(file_okay=False), help="Engines folder.")
@click.option("--force", is_flag=True, help="Rebuild engines that are already up to date.")
@click.option("--device", help="CUDA device for TensorRT (cuda, cuda:1 ...).")
@click.option(
    "--batch-range",
    default=",".join(map(str, DEFAULT_BATCH_RANGE)),
    show_default=True,
    help="TensorRT batch MIN,OPT,MAX; bigger batches are split at run time (ONNX and OpenVINO take any batch).",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when on a terminal].")
def build_engines(
    checkpoint: str | None,
    size: int,
    targets: str,
    precisions: str | None,
    out: str,
    force: bool,
    device: str | None,
    batch_range: str,
    progress: bool | None,
) -> None:
    """Compile the embed and reveal paths of a checkpoint into engines: ONNX, OpenVINO IR, TensorRT FP16.

    Engines go to the model's own folder, OUT/<first 12 hex digits of the checkpoint's sha256>/, so several models
    share one OUT. Each engine has a dynamic batch and the static size N, is checked against torch on random inputs,
    and is recorded in that folder's manifest.json (file, sha256, checkpoint sha256, size, batch range, precision,
    versions).
    Exit status: 0 when every requested engine is built or up to date (skipped targets are reported, with the
    reason), 1 when one failed.

    \b
    Example:
      python build_engines.py --checkpoint runs/small-v1/model.pt --size 256 --out engines/
    """
    from pipeline.model.checkpoint import CheckpointError, load_model
    from pipeline.runtime.build import build_engines as run_build
    from pipeline.runtime.manifest import model_folder

    check_checkpoint_exists(checkpoint)
    _setup_logging()
    try:
        model = load_model(checkpoint)
        report_folder = model_folder(out, model.checkpoint_sha256)
        report = run_build(
            model,
            size,
            _split(targets) or list(TARGETS),
            _split(precisions),
            out,
            force,
            device,
            _batch_range(batch_range),
            progress,
        )
    except CheckpointError as exc:
        click.echo(f"error: {checkpoint_message(checkpoint, exc)}", err=True)
        sys.exit(1)
    except (ValueError, RuntimeError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for r in report:
        seconds = f"{r.seconds:6.1f} s" if r.seconds else " " * 8
        click.echo(f"{r.status:>10}  {r.key:28} {seconds}  {r.detail}")
    click.echo(f"manifest: {report_folder / 'manifest.json'}")
    sys.exit(1 if any(r.status == "failed" for r in report) else 0)


def engines_overview(engines_dir: str, checkpoint: str | None) -> dict[str, Any]:
    """Machine, backends (usable or why not) and every engine in ``engines_dir``'s model folders with its status
    here; the folder of ``checkpoint`` (default: the shipped model) is marked as the one it uses."""
    from pipeline.model.checkpoint import CheckpointError, default_checkpoint_path
    from pipeline.runtime import resolve_backend
    from pipeline.runtime.build import CheckpointRef, entry_problem
    from pipeline.runtime.manifest import model_folder, model_folders, read_manifest
    from pipeline.runtime.probe import cpu_description, library_versions, probe_backends

    backends = probe_backends()
    ckpt, ckpt_note = None, ""
    try:
        if checkpoint or default_checkpoint_path().is_file():
            ckpt = CheckpointRef.load(checkpoint)
        else:
            ckpt_note = "no checkpoint given and no shipped model: engines checked for integrity only"
    except CheckpointError as exc:
        ckpt_note = checkpoint_message(checkpoint, exc)
    root = Path(engines_dir)
    layout_note = ""
    if (root / "manifest.json").is_file():
        layout_note = f"{root / 'manifest.json'}: the older one-model layout, not used (delete it and its engines)"
    in_use = None if ckpt is None else model_folder(root, ckpt.sha256)
    rows = []
    for folder in model_folders(root):
        for key, entry in read_manifest(folder).items():
            mine = folder == in_use
            status, why = _entry_status(entry, folder, ckpt if mine else None, entry_problem)
            runner = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}[entry.format]
            b = backends[runner]
            rows.append(
                {
                    "folder": folder.name,
                    "key": key,
                    "file": entry.file,
                    "precision": entry.precision,
                    "size": entry.size,
                    "batch": f"{entry.batch_min}-{entry.batch_max or 'any'}",
                    "checkpoint": entry.checkpoint,
                    "checkpoint_sha256": entry.checkpoint_sha256,
                    "in_use": mine,
                    "status": status,
                    "problem": why,
                    "runs_here": b.available and entry.precision in b.precisions,
                    "runner": runner,
                }
            )
    return {
        "machine": cpu_description(),
        "versions": library_versions(),
        "backends": {
            n: {
                "available": s.available,
                "version": s.version,
                "device": s.device,
                "precisions": list(s.precisions),
                "reason": s.reason,
            }
            for n, s in backends.items()
        },
        "auto": resolve_backend("auto"),
        "engines_dir": str(engines_dir),
        "checkpoint": None if ckpt is None else {"path": str(ckpt.path), "sha256": ckpt.sha256},
        "checkpoint_folder": None if in_use is None else in_use.name,
        "checkpoint_note": ckpt_note,
        "layout_note": layout_note,
        "engines": rows,
    }


def _entry_status(entry: Any, folder: Path, ckpt: Any, entry_problem: Any) -> tuple[str, str]:
    """ok / stale / corrupt / missing with the reason: against ``ckpt`` for the folder in use; elsewhere the files
    and that the entry belongs to its folder's model."""
    from pipeline.model.checkpoint import file_sha256
    from pipeline.runtime.manifest import MODEL_FOLDER_DIGITS

    if ckpt is not None:
        kind, why = entry_problem(entry, folder, ckpt)
        return kind or "ok", why
    files = {entry.file: entry.sha256, **entry.extra_files}
    if any(not (folder / f).is_file() for f in files):
        return "missing", "file missing"
    if entry.checkpoint_sha256[:MODEL_FOLDER_DIGITS] != folder.name:
        return "stale", f"built from checkpoint {entry.checkpoint_sha256[:12]}, not this folder's model"
    if any(file_sha256(folder / f) != h for f, h in files.items()):
        return "corrupt", "file changed after it was built"
    return "ok", ""


@click.command("engines")
@click.option("--engines-dir", default="engines", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="The model whose engines to check: a file or a shipped model by name [default: the shipped model].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def engines(engines_dir: str, checkpoint: str | None, as_json: bool) -> None:
    """List the built engines, one folder per model, and what this machine can run (backends, precisions, why
    not)."""
    from pipeline.runtime.errors import EngineError

    check_checkpoint_exists(checkpoint)
    logging.getLogger("pipeline.runtime").setLevel(logging.WARNING)  # `auto`'s choice is shown in the table
    try:
        ov = engines_overview(engines_dir, checkpoint)
    except EngineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(ov, indent=1))
        return
    m = ov["machine"]
    click.echo(f"machine: {m['model']}, {m['cores']} cores, {m['memory_gib']} GiB, flags: {' '.join(m['flags'])}")
    click.echo("backends (auto takes the first usable one, top to bottom):")
    for name, b in ov["backends"].items():
        if b["available"]:
            click.echo(
                f"  {name:12} yes  {b['version']:<12.12} {b['device']:5} {','.join(b['precisions']):15} {b['reason']}"
            )
        else:
            click.echo(f"  {name:12} no   {b['reason']}")
    click.echo(f"  auto -> {ov['auto']}")
    ck = ov["checkpoint"]
    if ck:
        against = f"the model in use is {ck['path']} (sha256 {ck['sha256'][:12]}), folder {ov['checkpoint_folder']}"
    else:
        against = ov["checkpoint_note"]
    click.echo(f"engines in {ov['engines_dir']}, one folder per model; {against}")
    if ov["layout_note"]:
        click.echo(f"  note: {ov['layout_note']}")
    if not ov["engines"]:
        click.echo(
            "  none built: they are built on first use, or by python build_engines.py --out " + ov["engines_dir"]
        )
    folder = None
    for r in ov["engines"]:
        if r["folder"] != folder:
            folder = r["folder"]
            mark = "  (in use)" if r["in_use"] else ""
            click.echo(f"  {folder}/  from {r['checkpoint']}{mark}")
        here = "runs here" if r["runs_here"] else f"not here ({r['runner']})"
        click.echo(
            f"    {r['key']:26} {r['file']:24} batch {r['batch']:6} {r['status']:8} {here}"
            + (f"  [{r['problem']}]" if r["problem"] else "")
        )
