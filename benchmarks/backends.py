#!/usr/bin/env python
"""Images/s of every backend and precision this machine runs, for embed and reveal, at batch 1, 8 and 32.

    python benchmarks/backends.py [--checkpoint PATH | --preset small] [--size 256] [--batches 1,8,32]
                                  [--backends torch,onnxruntime,openvino] [--out benchmarks/results]

Prints a table and writes OUT/backends.parquet (one row per backend, precision, part and batch, with the machine
and library versions), OUT/backends.md and OUT/backends.png. Speed does not depend on training, so without a
trained checkpoint an untrained model of ``--preset`` is saved to a temporary folder and measured.

Every backend is timed in the same process, one after the other, on the same inputs; the load average before and
after is recorded because another process on the machine (a training run) changes the absolute figures: compare
ratios measured in one run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

PARTS = ("embed", "reveal")


def machine_description() -> dict[str, Any]:
    """CPU, cores, memory, load average, GPU and library versions, for the results and the report header."""
    import torch

    from pipeline.runtime.probe import cpu_description, library_versions

    d: dict[str, Any] = {**cpu_description(), "versions": library_versions()}
    d["loadavg"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    d["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return d


def backend_plan(backends: Sequence[str] | None, precisions: Sequence[str] | None) -> list[tuple[str, str]]:
    """(backend, precision) pairs to measure: each usable backend with every precision it runs here."""
    from pipeline.runtime.probe import BACKENDS, normalize_precision, probe_backend

    names = list(backends) if backends else list(reversed(BACKENDS))  # reference first
    plan = []
    for name in names:
        status = probe_backend(name)
        if not status.available:
            click.echo(f"skipping {name}: {status.reason}", err=True)
            continue
        wanted = [normalize_precision(p) for p in precisions] if precisions else list(status.precisions)
        if name == "torch" and not precisions:
            wanted = ["fp32"]  # the reference; fp16 eager torch on GPU is not a deployment target
        plan += [(name, p) for p in wanted if p in status.precisions]
    return plan


def _inputs(engine: Any, part: str, batch: int, seed: int = 0, embedder: Any = None) -> tuple[np.ndarray, ...]:
    """[0, 1] float32 inputs of ``part`` for ``engine``: random (cover, secrets), or for reveal (stego,), the 8-bit
    stego that ``embedder`` (default: ``engine``) makes of them. Reveal gets real stegos because on random noise
    the carrier's pilot reads a gain near zero and magnifies float differences between runtimes 50-fold."""
    i = engine.info
    rng = np.random.default_rng(seed)
    cover = rng.random((batch, i.channels, i.size, i.size), dtype=np.float32)
    secrets = rng.random((batch, i.channels * i.num_secrets, i.size, i.size), dtype=np.float32)
    if part == "reveal":
        stego = (embedder or engine).embed(cover, secrets)
        return (np.round(np.clip(stego, 0, 1) * 255).astype(np.float32) / 255,)
    return cover, secrets


def time_call(fn: Any, args: tuple[np.ndarray, ...], min_seconds: float, min_iters: int) -> float:
    """Images/s of repeated ``fn(*args)``: at least ``min_iters`` calls and ``min_seconds`` (no warm-up here)."""
    iters, t0 = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - t0 < min_seconds:
        fn(*args)
        iters += 1
    return len(args[0]) * iters / (time.perf_counter() - t0)


def run_benchmark(
    checkpoint: str,
    engines_dir: str,
    size: int = 256,
    batches: Sequence[int] = (1, 8, 32),
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    min_seconds: float = 3.0,
    min_iters: int = 1,
    rounds: int = 3,
    threads: int | None = None,
    progress: bool | None = None,
) -> Any:
    """Measure every planned (backend, precision) x part x batch; returns a pandas DataFrame, one row each.

    All engines are loaded first (missing ones are built; ``load_seconds``). Then, for each part and batch, every
    engine gets one warm-up call and is timed in ``rounds`` interleaved rounds (A B C, A B C, ...), so that a change
    in the machine's load hits all backends alike. ``images_per_s`` is the best round (the least disturbed one),
    ``images_per_s_median`` the median. ``max_abs_diff`` is the largest difference from torch fp32 on the same
    batch-1 input (None for torch itself).
    """
    import pandas as pd
    import torch
    from tqdm import tqdm

    from pipeline.model import load_model
    from pipeline.runtime import load_engine
    from pipeline.runtime.probe import cpu_count

    threads = threads or cpu_count()
    torch.set_num_threads(threads)  # the compiled backends use every core too: compare like with like
    plan = backend_plan(backends, precisions)
    model = load_model(checkpoint)  # once: every engine is built from it
    reference = load_engine("torch", model, size)
    engines, load_s = {}, {}
    for backend, precision in plan:
        t0 = time.perf_counter()
        engines[backend, precision] = (
            reference
            if (backend, precision) == ("torch", "fp32")
            else load_engine(backend, model, size, precision=precision, engines_dir=engines_dir, threads=threads)
        )
        load_s[backend, precision] = time.perf_counter() - t0
    rows = []
    bar = tqdm(
        total=len(PARTS) * len(batches) * rounds * len(plan),
        desc="benchmark",
        unit="run",
        disable=None if progress is None else not progress,
    )
    for part in PARTS:
        ref_out = getattr(reference, part)(*_inputs(reference, part, 1, embedder=reference))
        for batch in batches:
            speeds: dict[tuple[str, str], list[float]] = {k: [] for k in engines}
            for engine in engines.values():
                getattr(engine, part)(*_inputs(engine, part, batch))  # warm-up: first-call compilation excluded
            for _ in range(rounds):
                for key, engine in engines.items():
                    bar.set_postfix_str(f"{part} b{batch} {key[0]} {key[1]}")
                    speeds[key].append(
                        time_call(getattr(engine, part), _inputs(engine, part, batch), min_seconds, min_iters)
                    )
                    bar.update()
            for (backend, precision), v in speeds.items():
                engine = engines[backend, precision]
                diff = None
                if backend != "torch":
                    ref_in = _inputs(engine, part, 1, embedder=reference)
                    diff = float(np.abs(getattr(engine, part)(*ref_in) - ref_out).max())
                rows.append(
                    {
                        "backend": backend,
                        "precision": precision,
                        "part": part,
                        "batch": batch,
                        "images_per_s": max(v),
                        "images_per_s_median": float(np.median(v)),
                        "rounds": rounds,
                        "size": size,
                        "threads": threads,
                        "max_abs_diff": diff,
                        "load_seconds": load_s[backend, precision],
                        "device": engine.info.device,
                    }
                )
    bar.close()
    return pd.DataFrame(rows)


def markdown_table(df: Any, machine: dict[str, Any], command: str) -> str:
    """Images/s as one row per backend + precision and one column per part and batch, with the machine above."""
    batches = sorted(df["batch"].unique())
    head = "| backend | precision | " + " | ".join(f"{p} b{b}" for p in PARTS for b in batches)
    head += " | max abs diff vs torch (embed / reveal) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (backend, precision), g in df.groupby(["backend", "precision"], sort=False):
        cells = []
        for p in PARTS:
            for b in batches:
                v = g[(g.part == p) & (g.batch == b)].images_per_s
                cells.append(f"{v.iloc[0]:.1f}" if len(v) else "")
        diffs = [g[g.part == p].max_abs_diff.iloc[0] for p in PARTS]
        dtxt = " / ".join("-" if d is None or np.isnan(d) else f"{d:.1e}" for d in diffs)
        lines.append(f"| {backend} | {precision} | " + " | ".join(cells) + f" | {dtxt} |")
    m, n = machine, int(df["size"].iloc[0])
    header = [
        f"Images/s at {n}x{n} ({int(df['threads'].iloc[0])} threads), best of {int(df['rounds'].iloc[0])} interleaved "
        "rounds.",
        f"Machine: {m['model']}, {m['cores']} cores, {m['memory_gib']} GiB, CPU flags: {' '.join(m['flags'])}; "
        f"GPU: {m['gpu'] or 'none'}; load average before/after: {m['loadavg']} / {m.get('loadavg_after')}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(header + lines) + "\n"


def bar_chart(df: Any, path: Path) -> None:
    """Grouped bars: batch sizes on x, one bar per backend + precision, embed and reveal side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(zip(df.backend, df.precision, strict=True)))
    batches = sorted(df["batch"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    width = 0.8 / max(len(configs), 1)
    for ax, part in zip(axes, PARTS, strict=True):
        for k, (backend, precision) in enumerate(configs):
            sel = df[(df.backend == backend) & (df.precision == precision) & (df.part == part)]
            vals = [sel[sel.batch == b].images_per_s.sum() for b in batches]
            ax.bar(np.arange(len(batches)) + k * width, vals, width, label=f"{backend} {precision}")
        ax.set_xticks(np.arange(len(batches)) + width * (len(configs) - 1) / 2, [f"batch {b}" for b in batches])
        ax.set_title(f"{part} at {int(df['size'].iloc[0])}x{int(df['size'].iloc[0])}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("images/s")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_results(df: Any, machine: dict[str, Any], out: Path, command: str) -> dict[str, Path]:
    """Parquet (machine description in the schema metadata too), markdown table and PNG chart under ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(
        df.assign(cpu=machine["model"], cores=machine["cores"], versions=json.dumps(machine["versions"])),
        preserve_index=False,
    )
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"machine": json.dumps(machine).encode(), b"command": command.encode()}
    )
    paths = {"parquet": out / "backends.parquet", "markdown": out / "backends.md", "png": out / "backends.png"}
    pq.write_table(table, paths["parquet"])
    paths["markdown"].write_text(markdown_table(df, machine, command))
    bar_chart(df, paths["png"])
    return paths


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _untrained_checkpoint(preset: str, folder: str) -> str:
    import torch

    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(
        build_model(get_config(preset)),
        Path(folder) / f"untrained-{preset}.pt",
        meta={"note": "untrained, for speed measurements only"},
    )
    return str(path)


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Checkpoint [default: the shipped model, else an untrained --preset model].",
)
@click.option("--preset", default="small", show_default=True, help="Preset of the untrained stand-in model.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096))
@click.option("--batches", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--backends", help="Comma-separated backends [default: every usable one].")
@click.option("--precision", "precisions", help="Comma-separated precisions [default: all each backend runs here].")
@click.option("--engines-dir", help="Engines folder [default: a temporary one; engines are built first].")
@click.option(
    "--min-seconds", default=2.0, show_default=True, help="Time each configuration per round at least this long."
)
@click.option("--rounds", default=3, show_default=True, help="Interleaved rounds per configuration (best is kept).")
@click.option("--threads", type=int, help="CPU threads per backend [default: all usable cores].")
@click.option("--out", default="benchmarks/results", show_default=True, type=click.Path(file_okay=False))
def main(
    checkpoint: str | None,
    preset: str,
    size: int,
    batches: str,
    backends: str | None,
    precisions: str | None,
    engines_dir: str | None,
    min_seconds: float,
    rounds: int,
    threads: int | None,
    out: str,
) -> None:
    """Measure images/s per backend, precision and batch size; print and save the table."""
    from pipeline.model.checkpoint import default_checkpoint_path

    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="sris-bench-") as tmp:
        if not checkpoint:
            if default_checkpoint_path().is_file():
                checkpoint = str(default_checkpoint_path())
            else:
                checkpoint = _untrained_checkpoint(preset, tmp)
                click.echo(f"no shipped model yet: measuring an untrained {preset!r} model ({checkpoint})")
        machine = machine_description()
        df = run_benchmark(
            checkpoint,
            engines_dir or str(Path(tmp) / "engines"),
            size,
            [int(b) for b in _split(batches) or []],
            _split(backends),
            _split(precisions),
            min_seconds,
            rounds=rounds,
            threads=threads,
        )
        machine["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    paths = save_results(df, machine, Path(out), command)
    click.echo(markdown_table(df, machine, command))
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo root holds pipeline/
    main()
