"""``python -m pipeline evaluate``: the paper's tables for one or more checkpoints on a photo set.

Work per model: embed every cover with its secret(s) in batches, round the stego to 8 bits, reveal it clean and after
each evaluation attack (the paper's, then the published-image conditions of ``pipeline.evaluate.published``; also
rounded to 8 bits, as a saved image), and measure; then steganalysis on the (cover, stego) pairs; then the capacity
checkpoints. Results go to one Parquet per table (a row per image and condition), ``report.md`` and PNG figures
(``pipeline.evaluate.report``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from pipeline.core import distortions as D
from pipeline.core.files import atomic_path
from pipeline.core.metrics import ms_ssim, ms_ssim_scales, mse, psnr, psnr_y, scc, ssim
from pipeline.core.versions import library_versions
from pipeline.evaluate import published as P
from pipeline.evaluate import report
from pipeline.evaluate import steganalysis as S
from pipeline.evaluate.data import EncodedPhotos, read_photos, secrets_for
from pipeline.evaluate.results import ModelResult
from pipeline.model.checkpoint import (
    CheckpointError,
    default_checkpoint_path,
    file_sha256,
    load_model,
    resolve_checkpoint,
)

ARCH_NAMES = {"sris": "SRIS-Net", "hinet": "HiNet-style", "unet": "U-Net"}
ABLATIONS = {"lpfdd": "no LPFDD", "glem_global": "no GLEM global", "sfm": "no SFM", "score_map": "no score map"}


@dataclass
class EvalConfig:
    """Everything one evaluation depends on (written to ``run.json`` beside the report)."""

    data: str
    out: str
    checkpoints: list[str] = field(default_factory=list)  # "PATH" or "LABEL=PATH"; empty: the shipped model
    capacity: dict[int, str] = field(default_factory=dict)  # K -> checkpoint trained with K secrets
    size: int = 256
    quick: bool = False
    subset: str = "all"
    limit: int | None = None
    batch: int = 4
    device: str = "cpu"
    seed: int = 0
    splits: int = 5
    xunet_epochs: int = 20
    stega_tile: int = 128
    samples: int = 4
    command: str = ""

    def resolved(self) -> EvalConfig:
        """``--quick``: at most 8 photos, 2 figure grids, 5 XuNet epochs (explicit values still win for limit)."""
        if not self.quick:
            return self
        return EvalConfig(
            **{
                **asdict(self),
                "limit": self.limit or 8,
                "samples": min(self.samples, 2),
                "xunet_epochs": min(self.xunet_epochs, 5),
            }
        )


@dataclass
class ModelEntry:
    label: str
    path: Path
    model: torch.nn.Module

    @property
    def num_secrets(self) -> int:
        return self.model.config.num_secrets

    @property
    def channels(self) -> int:
        return self.model.config.channels


def parse_checkpoint_arg(value: str) -> tuple[str | None, str]:
    """``LABEL=PATH`` -> (label, path); a bare ``PATH`` (even one containing '=' after a slash) -> (None, path)."""
    label, sep, path = value.partition("=")
    if sep and label and os.sep not in label and "/" not in label and not Path(value).exists():
        return label, path
    return None, value


def model_name(model: torch.nn.Module, path: Path) -> str:
    """A readable name from the checkpoint: meta["name"] if set, else architecture, preset and ablations."""
    meta = getattr(model, "checkpoint_meta", {}) or {}
    if meta.get("name"):
        return str(meta["name"])
    cfg = model.config
    parts = [ARCH_NAMES.get(cfg.network.arch, cfg.network.arch)]
    preset = (meta.get("train_config") or {}).get("preset")
    if preset:
        parts.append(preset)
    extras = [
        text for flag, text in ABLATIONS.items() if not getattr(cfg.ablation, flag) and cfg.network.arch == "sris"
    ]
    if cfg.num_secrets > 1:
        extras.append(f"K={cfg.num_secrets}")
    name = " ".join(parts)
    return f"{name} ({', '.join(extras)})" if extras else name


def load_models(specs: Sequence[str], device: str) -> list[ModelEntry]:
    """Load every ``--checkpoint`` (default: the shipped model), with unique labels."""
    if not specs:
        path = default_checkpoint_path()
        if not path.is_file():
            raise CheckpointError(
                f"the shipped model {path} does not exist yet: pass --checkpoint PATH (for example runs/NAME/best.pt) "
                "or train one with `python -m pipeline train`"
            )
        specs = [str(path)]
    loaded = []
    for spec in specs:
        label, path = parse_checkpoint_arg(spec)
        model = load_model(path, device=device)
        path = resolve_checkpoint(path)
        loaded.append((label, path, model, label or model_name(model, path)))
    counts = Counter(name for *_, name in loaded)
    entries: list[ModelEntry] = []
    for label, path, model, name in loaded:
        if label is None and counts[name] > 1:  # e.g. two runs of one architecture: tell them apart by file
            name = f"{name} [{path.parent.name}/{path.name}]"
        unique, n = name, 2
        while unique in {e.label for e in entries}:
            unique, n = f"{name} #{n}", n + 1
        entries.append(ModelEntry(unique, path, model))
    return entries


@dataclass(frozen=True)
class Attack:
    """A named distortion of the report's robustness table."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]


def report_attacks(seed: int = 0) -> list[Attack]:
    """The robustness conditions of the report, in order: the paper's (Tables 4-5; noise drawn from one generator
    seeded with ``seed``, so every model meets the same draws), then the published-image conditions
    (``published.PUBLISHED``: real JPEG, WebP, resizing and shifts)."""
    gen = torch.Generator().manual_seed(seed)
    paper = [
        Attack("clean", lambda x: x),
        Attack("mean 3x3", D.mean_filter),
        Attack("gaussian 3x3 s0.5", lambda x: D.gaussian_filter(x, 0.5)),
        Attack("gaussian 3x3 s1", lambda x: D.gaussian_filter(x, 1.0)),
        Attack("gaussian 3x3 s2", lambda x: D.gaussian_filter(x, 2.0)),
        Attack("sharpen", D.sharpen),
        Attack("noise s1", lambda x: D.gaussian_noise(x, 1.0, gen)),
        Attack("noise s5", lambda x: D.gaussian_noise(x, 5.0, gen)),
        Attack("noise s10", lambda x: D.gaussian_noise(x, 10.0, gen)),
        Attack("h-flip", D.hflip),
    ]
    return paper + [Attack(name, fn) for name, fn in P.PUBLISHED.items()]


def check_size(entry: ModelEntry, size: int) -> None:
    m = entry.model.config.multiple
    if size % m:
        raise ValueError(f"--size {size} is not a multiple of {m}, which model {entry.label!r} needs")


# ---------------------------------------------------------------------------------------------------------------------
# Running a model
# ---------------------------------------------------------------------------------------------------------------------


def _u8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 (the saved image)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.inference_mode()
def embed_all(
    model: torch.nn.Module,
    covers: torch.Tensor,
    secrets: torch.Tensor,
    batch: int,
    device: str,
    bar: tqdm | None = None,
) -> torch.Tensor:
    """(N, C, H, W), (N, K*C, H, W) float in [0, 1] -> stegos (N, C, H, W) uint8."""
    out = []
    for i in range(0, len(covers), batch):
        out.append(_u8(model.embed(covers[i : i + batch].to(device), secrets[i : i + batch].to(device))).cpu())
        if bar is not None:
            bar.update(len(out[-1]))
    return torch.cat(out)


@torch.inference_mode()
def reveal_all(
    model: torch.nn.Module,
    stegos: torch.Tensor,
    batch: int,
    device: str,
    attack: Attack | None = None,
    bar: tqdm | None = None,
) -> torch.Tensor:
    """uint8 stegos (N, C, H, W) -> uint8 recovered secrets (N, K*C, H, W), after ``attack`` (re-rounded to 8 bits)."""
    out = []
    for i in range(0, len(stegos), batch):
        x = stegos[i : i + batch].float() / 255
        if attack is not None:
            x = _u8(attack.fn(x)).float() / 255
        out.append(_u8(model.reveal(x.to(device))).cpu())
        if bar is not None:
            bar.update(len(x))
    return torch.cat(out)


def pair_metrics(ref: torch.Tensor, test: torch.Tensor, full: bool = True) -> dict[str, np.ndarray]:
    """Per-image metrics of uint8 images (B, C, H, W): mse, psnr, psnr_y, ssim and, with ``full``, ms_ssim and scc."""
    a, b = ref.double(), test.double()
    out = {"mse": mse(a, b), "psnr": psnr(a, b), "psnr_y": psnr_y(a, b), "ssim": ssim(a, b)}
    if full:
        out["ms_ssim"] = ms_ssim(a, b)
        out["scc"] = scc(a, b)
    return {k: v.numpy() for k, v in out.items()}


def _metric_rows(
    base: dict,
    names: Sequence[str],
    ref: torch.Tensor,
    test: torch.Tensor,
    channels: int,
    full: bool = True,
    chunk: int = 8,
) -> list[dict]:
    """Rows (one per image and secret index) for ref/test holding K groups of ``channels`` channels."""
    rows = []
    k_total = ref.shape[1] // channels
    for k in range(k_total):
        sl = slice(k * channels, (k + 1) * channels)
        for i in range(0, len(ref), chunk):
            m = pair_metrics(ref[i : i + chunk, sl], test[i : i + chunk, sl], full)
            for j in range(len(m["mse"])):
                rows.append(
                    {**base, "image": names[i + j], "secret_index": k, **{n: float(v[j]) for n, v in m.items()}}
                )
    return rows


def evaluate_model(entry: ModelEntry, photos: EncodedPhotos, cfg: EvalConfig, attacks: Sequence[Attack]) -> ModelResult:
    """Tables 1 and 3 for one model: quality rows (cover/stego, secret/recovery) and robustness rows per attack."""
    t0 = time.perf_counter()
    names, covers = photos.images(entry.channels, cfg.size)
    secrets = secrets_for(covers, entry.num_secrets)
    n = len(covers)
    bar = tqdm(total=n * (1 + len(attacks)), desc=f"{entry.label}: embed/reveal", unit="img")
    stegos = embed_all(entry.model, covers, secrets, cfg.batch, cfg.device, bar)
    covers8, secrets8 = _u8(covers), _u8(secrets)
    base = {"model": entry.label}
    quality = _metric_rows({**base, "pair": "cover/stego"}, names, covers8, stegos, entry.channels)
    for r in quality:
        r["secret_index"] = None  # the cover pair has no secret index
    robustness, recovered = [], None
    for attack in attacks:
        rec = reveal_all(entry.model, stegos, cfg.batch, cfg.device, attack, bar)
        if attack.name == "clean":
            recovered = rec
            quality += _metric_rows({**base, "pair": "secret/recovery"}, names, secrets8, rec, entry.channels)
        ref, test = secrets8, rec
        if attack.name in P.SHIFT_OF:  # measured on the region the shifted stego shares with the original
            test, ref, _ = P.overlap_pair(rec, secrets8, P.SHIFT_OF[attack.name])
        robustness += _metric_rows({**base, "attack": attack.name}, names, ref, test, entry.channels, full=False)
    bar.close()
    if recovered is None:
        recovered = reveal_all(entry.model, stegos, cfg.batch, cfg.device)
    return ModelResult(
        entry.label, stegos, recovered, secrets8, covers8, names, quality, robustness, time.perf_counter() - t0
    )


def load_capacity_models(capacity: dict[int, str], device: str, size: int) -> dict[int, ModelEntry]:
    """Load the ``--capacity-checkpoint`` models up front, so a wrong K or size fails before any long work."""
    out = {}
    for k in sorted(capacity):
        label, path = parse_checkpoint_arg(capacity[k])
        model = load_model(path, device=device)
        if model.config.num_secrets != k:
            raise ValueError(f"--capacity-checkpoint {k}={path}: that model hides {model.config.num_secrets} secret(s)")
        path = resolve_checkpoint(path)
        out[k] = ModelEntry(label or model_name(model, path), path, model)
        check_size(out[k], size)
    return out


def evaluate_capacity(entries: dict[int, ModelEntry], photos: EncodedPhotos, cfg: EvalConfig) -> list[dict]:
    """Table 6: clean cover/stego and secret/recovery metrics for each K-secret checkpoint."""
    rows = []
    for k, entry in sorted(entries.items()):
        names, covers = photos.images(entry.channels, cfg.size)
        secrets = secrets_for(covers, k)
        bar = tqdm(total=2 * len(covers), desc=f"capacity K={k}", unit="img")
        stegos = embed_all(entry.model, covers, secrets, cfg.batch, cfg.device, bar)
        rec = reveal_all(entry.model, stegos, cfg.batch, cfg.device, bar=bar)
        bar.close()
        base = {"model": entry.label, "checkpoint": str(entry.path), "k": k}
        cover_rows = _metric_rows({**base, "pair": "cover/stego"}, names, _u8(covers), stegos, entry.channels, False)
        secret_rows = _metric_rows({**base, "pair": "secret/recovery"}, names, _u8(secrets), rec, entry.channels, False)
        for r in cover_rows:
            r["secret_index"] = None
        rows += cover_rows + secret_rows
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------

SCHEMAS = {
    "quality": pa.schema(
        [
            ("model", pa.string()),
            ("pair", pa.string()),
            ("image", pa.string()),
            ("secret_index", pa.int32()),
            ("mse", pa.float64()),
            ("psnr", pa.float64()),
            ("psnr_y", pa.float64()),
            ("ssim", pa.float64()),
            ("ms_ssim", pa.float64()),
            ("scc", pa.float64()),
        ]
    ),
    "robustness": pa.schema(
        [
            ("model", pa.string()),
            ("attack", pa.string()),
            ("image", pa.string()),
            ("secret_index", pa.int32()),
            ("mse", pa.float64()),
            ("psnr", pa.float64()),
            ("psnr_y", pa.float64()),
            ("ssim", pa.float64()),
        ]
    ),
    "security": pa.schema(
        [
            ("model", pa.string()),
            ("detector", pa.string()),
            ("split", pa.int32()),
            ("image", pa.string()),
            ("tile", pa.int32()),
            ("label", pa.int8()),
            ("score", pa.float64()),
        ]
    ),
    "capacity": pa.schema(
        [
            ("model", pa.string()),
            ("checkpoint", pa.string()),
            ("k", pa.int32()),
            ("pair", pa.string()),
            ("image", pa.string()),
            ("secret_index", pa.int32()),
            ("mse", pa.float64()),
            ("psnr", pa.float64()),
            ("psnr_y", pa.float64()),
            ("ssim", pa.float64()),
        ]
    ),
}


def write_table(rows: list[dict], name: str, out: Path) -> Path:
    """One Parquet per table, written to a temporary name and renamed (a reader never sees half a file)."""
    schema = SCHEMAS[name]
    table = pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
    path = out / f"{name}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _versions() -> dict[str, str]:
    libraries = library_versions(("torch", "numpy", "sris-pipeline"), missing="not installed")
    machine = {"platform": platform.platform(), "cpu_count": str(os.cpu_count())}
    return {"python": libraries.pop("python"), **machine, **libraries}


def run_evaluation(cfg: EvalConfig) -> Path:
    """Run every table and write the report; returns the path of ``report.md``."""
    cfg = cfg.resolved()
    if cfg.size < 16:
        raise ValueError(f"--size must be at least 16 px, got {cfg.size}")
    entries = load_models(cfg.checkpoints, cfg.device)
    for e in entries:
        check_size(e, cfg.size)
    capacity_entries = load_capacity_models(cfg.capacity, cfg.device, cfg.size)
    photos = read_photos(cfg.data, cfg.subset, limit=cfg.limit)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    results: list[ModelResult] = []
    security: list[dict] = []
    stega_notes: list[str] = []
    cache: dict = {}
    detectors = S.default_detectors(cfg.xunet_epochs, cfg.device)
    for entry in entries:
        res = evaluate_model(entry, photos, cfg, report_attacks(cfg.seed))  # same noise draws for every model
        results.append(res)
        if len(res.names) < 4:
            stega_notes.append(f"{entry.label}: steganalysis skipped, it needs at least 4 photos ({len(res.names)})")
            continue
        rows = S.run_steganalysis(
            res.covers.numpy(), res.stegos.numpy(), detectors, cfg.splits, cfg.stega_tile or None, cfg.seed, cache
        )
        security += [{"model": entry.label, "image": res.names[r["photo"]], **r} for r in rows]
    capacity = evaluate_capacity(capacity_entries, photos, cfg)

    files = {
        name: write_table(rows, name, out)
        for name, rows in (
            ("quality", [r for res in results for r in res.quality]),
            ("robustness", [r for res in results for r in res.robustness]),
            ("security", security),
            ("capacity", capacity),
        )
    }
    figures = report.write_figures(results, out, cfg.samples)
    info = {
        "config": {**asdict(cfg), "capacity": {str(k): v for k, v in cfg.capacity.items()}},
        "models": [
            {
                "label": e.label,
                "path": str(e.path),
                "sha256": file_sha256(e.path),
                "config": e.model.config.to_dict(),
                "meta": e.model.checkpoint_meta,
                "seconds": round(r.seconds, 1),
            }
            for e, r in zip(entries, results, strict=True)
        ],
        "photos": results[0].names if results else [],
        "skipped_photos": photos.skipped,
        "ms_ssim_scales": ms_ssim_scales(cfg.size),
        "versions": _versions(),
        "seconds": round(time.perf_counter() - t0, 1),
        "files": {k: v.name for k, v in files.items()},
    }
    (out / "run.json").write_text(json.dumps(info, indent=1, default=str))
    path = report.write_report(out, info, results, security, capacity, figures, detectors, stega_notes)
    return path
