"""``python -m pipeline benchmark``: images/s of every stage of the embed job and end to end, per backend and decoder.

For each input size (N x N photos by default, or ``--megapixels`` photos at 4:3) a shard of synthetic photo-like
JPEGs is written to a temporary folder, then:

- each stage runs alone over all images, exactly as the job runs it (read = stream the shard into samples; decode and
  encode in the thread pool; preprocess / embed / compose / verify per batch on the engine): images/s per stage;
- the real job (EmbedJob + LocalRunner, all stages overlapping) runs over the same shard: images/s end to end;
- the stage with the lowest images/s is named as the bound.

``--memory-check MP`` runs the embed command in a subprocess on a shard of MP-megapixel photos and reports its peak
resident memory (ru_maxrss): the job streams, so this must stay bounded (< 4 GiB for 50 MP photos).
Results: a table on stdout, ``OUT/benchmark-TIMESTAMP.parquet`` and ``.png``.
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg

STAGES = ("read", "decode", "preprocess", "embed", "compose", "verify", "encode", "write")


@dataclass(frozen=True)
class BenchmarkConfig:
    size: int = 256
    images: int = 64
    megapixels: tuple[float, ...] = ()
    backends: tuple[str, ...] = ()
    decoders: tuple[str, ...] = ()
    checkpoint: str | None = None
    engines_dir: str = "engines"
    batch_size: int = 8
    workers: int | None = None
    memory_mp: float | None = None
    memory_images: int = 3
    out: str = "benchmark-results"
    layers: tuple[str, ...] = ()  # "all" and/or "digital" (models with the digital layer) [default: all]


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like uint8 RGB image: smooth colour waves, a few discs, mild noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        fy, fx, ph = rng.uniform(1, 6, 3)
        ch = 120 + 80 * np.sin(fy * np.pi * yy + ph) * np.cos(fx * np.pi * xx)
        for _ in range(3):
            cy, cx, r = rng.uniform(0, 1, 3)
            ch = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < (r / 4) ** 2, rng.uniform(0, 255), ch)
        ch += rng.normal(0, 3, (h, w)).astype(np.float32)
        img[..., c] = np.clip(ch, 0, 255)
    return img


def dims_for(megapixels: float | None, size: int) -> tuple[int, int]:
    """(height, width) of the benchmark photos: N x N (megapixels None or 0), or 4:3 photos of that many MP."""
    if not megapixels:
        return size, size
    w = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    return round(w * 3 / 4), w


def write_shard(path: Path, n: int, h: int, w: int, distinct: int = 8) -> Path:
    """A WebDataset shard of ``n`` JPEGs (q90) of h x w; ``distinct`` photos cycled (generation is not measured)."""
    import io
    import tarfile

    blobs = [simplejpeg.encode_jpeg(photo(h, w, seed), quality=90) for seed in range(min(n, distinct))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for i in range(n):
            data = blobs[i % len(blobs)]
            ti = tarfile.TarInfo(f"{i:06d}.jpg")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def _batches(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def available_backends(requested: tuple[str, ...]) -> list[str]:
    if requested:
        return list(requested)
    try:
        from pipeline.runtime.probe import BACKENDS, probe_backend

        return [b for b in BACKENDS if probe_backend(b).available]
    except ImportError:  # a runtime without the probe module knows only torch
        return ["torch"]


def dwtdct_ips(shard: Path) -> float | None:
    """invisible-watermark's dwtDct embed (a 32-bit mark) over the shard's images, decoded beforehand, one thread, no
    decode or encode timed: the reference our end-to-end figure is divided by. None when the library is missing
    (``pip install invisible-watermark``) or the images are under its 256 x 256 minimum."""
    import tarfile

    try:
        import cv2
        from imwatermark import WatermarkEncoder
    except ImportError:
        return None
    with tarfile.open(shard) as tf:
        blobs = [tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()]
    images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]
    if min(images[0].shape[:2]) < 256:  # dwtDct refuses images under 256 x 256
        return None
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", b"sris")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        encoder.encode(images[0], "dwtDct")  # warm-up
        t = time.perf_counter()
        for img in images:
            encoder.encode(img, "dwtDct")
        return len(images) / (time.perf_counter() - t)
    finally:
        cv2.setNumThreads(threads)


def measure(
    cfg: BenchmarkConfig, engine: Any, decoder_name: str, shard: Path, secret: bytes, work: Path, layers: str = "all"
) -> dict:
    """Per-stage images/s (each stage alone) and end-to-end images/s (the real job) for one engine and decoder;
    ``layers`` as the job's ``--layers``."""
    from pipeline.io.decode import make_decoder
    from pipeline.io.tar_writer import TarShardWriter
    from pipeline.jobs.batch import JobSettings, finish_pending
    from pipeline.jobs.embed import EmbedJob
    from pipeline.jobs.runners import LocalRunner

    workers = cfg.workers or os.cpu_count() or 1
    settings = JobSettings(size=cfg.size, layers=layers)
    # One warm-up batch through the engine, so first-call allocations are not charged to the embed stage.
    n, k, b = cfg.size, engine.info.num_secrets, cfg.batch_size
    engine.reveal(engine.embed(np.zeros((b, 3, n, n), np.float32), np.zeros((b, 3 * k, n, n), np.float32)))
    secs = dict.fromkeys(STAGES, 0.0)
    with ThreadPoolExecutor(workers) as pool:
        decoder = make_decoder(decoder_name, workers, settings.max_pixels, pool=pool, batch_size=cfg.batch_size)
        job = EmbedJob(str(shard), str(work / "stages"), engine, settings, decoder, secrets=[secret], job_id="bench")
        (ref,) = job.plan()
        # And one batch through the job's stages: the secret's one-off coding (a cache miss) and the layer's keyed
        # patterns belong to the job's start, not to the steady state each stage's rate measures.
        warm = list(itertools.islice(job.samples(ref), cfg.batch_size))
        job.probe(warm)
        job.decode(warm), job.infer(warm), job.verify(warm), finish_pending(warm)
        t = time.perf_counter()
        samples = list(job.samples(ref))
        job.probe(samples)
        secs["read"] = time.perf_counter() - t
        for batch in _batches(samples, cfg.batch_size):
            secs["decode"] += job.decode(batch)["decode"]
            for k, v in (job.infer(batch) | job.verify(batch)).items():
                secs[k] += v
            secs["verify"] += finish_pending(batch)  # the digital check's end (the job's writer finishes it)
        t = time.perf_counter()
        list(pool.map(job.encode, samples))
        secs["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        writer = TarShardWriter(str(work / "stages"), ref.name, "bench")
        for s in samples:
            for name, data in s.outputs:
                writer.add(name, data)
        writer.commit()
        job.write_results(ref, [s.row for s in samples])
        secs["write"] = time.perf_counter() - t
        failed = [s.row["error"] for s in samples if s.row["status"] != "ok"]
        if failed:
            raise RuntimeError(f"benchmark images failed: {failed[:3]}")
        del samples

    n = cfg.images
    e2e_job = EmbedJob(
        str(shard),
        str(work / "e2e"),
        engine,
        settings,
        make_decoder(decoder_name, workers, settings.max_pixels, batch_size=cfg.batch_size),
        secrets=[secret],
        force=True,
    )
    e2e_job.plan()
    t = time.perf_counter()
    LocalRunner(workers=workers, batch_size=cfg.batch_size, progress=False).run(e2e_job)
    e2e = time.perf_counter() - t
    if e2e_job.totals.images_ok != n:
        raise RuntimeError(f"end-to-end run processed {e2e_job.totals.images_ok} of {n} images")
    rates = {f"{k}_ips": n / v if v > 0 else math.inf for k, v in secs.items()}
    bound = min(STAGES, key=lambda k: rates[f"{k}_ips"])
    # The decoder as it ran: DALI without a GPU says "dali-cpu" (its CPU-only mode), not "dali".
    return {**rates, "end_to_end_ips": n / e2e, "bound_by": bound, "end_to_end_s": e2e, "decoder": decoder.name}


def memory_check(cfg: BenchmarkConfig, backend: str, secret_path: Path, work: Path) -> dict:
    """Run the embed command on ``memory_images`` photos of ``memory_mp`` MP in a subprocess; its peak RSS."""
    from PIL import Image

    h, w = dims_for(cfg.memory_mp, cfg.size)
    # A 1000-px photo upscaled to full size: realistic JPEG size, cheap to generate.
    small = Image.fromarray(photo(max(2, h // 8), max(2, w // 8), 0))
    big = np.asarray(small.resize((w, h), Image.BICUBIC))
    data = simplejpeg.encode_jpeg(big, quality=90)
    del big
    import io
    import tarfile

    shard = work / "mem" / "big.tar"
    shard.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(shard, "w") as tf:
        for i in range(cfg.memory_images):
            ti = tarfile.TarInfo(f"{i:04d}.jpg")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    # The child reports its own peak RSS on exit (RUSAGE_CHILDREN would mix in any other child of this process).
    wrapper = (
        "import resource, runpy, sys\n"
        "try:\n    runpy.run_module('pipeline', run_name='__main__')\n"
        "finally:\n    print(f'PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)"
    )
    cmd = [
        sys.executable,
        "-c",
        wrapper,
        "embed",
        "--shards",
        str(shard.parent),
        "--out",
        str(work / "mem-out"),
        "--secret",
        str(secret_path),
        "--backend",
        backend,
        "--size",
        str(cfg.size),
        "--no-progress",
        "--batch-size",
        str(cfg.batch_size),
        "--max-megapixels",
        str(max(100.0, cfg.memory_mp * 1.1)),
    ]
    if cfg.checkpoint:
        cmd += ["--checkpoint", cfg.checkpoint]
    cmd += ["--engines-dir", cfg.engines_dir]
    if cfg.workers:
        cmd += ["--workers", str(cfg.workers)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"memory check failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak_kb = [int(line.split("=")[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB=")]
    return {
        "megapixels": cfg.memory_mp,
        "width": w,
        "height": h,
        "images": cfg.memory_images,
        "jpeg_mb": len(data) / 1e6,
        "peak_rss_mb": peak_kb[-1] / 1024,
        "wall_s": wall,
        "images_per_s": cfg.memory_images / wall,
        "summary": proc.stdout.strip().splitlines()[-1],
    }


def _say(message: str) -> None:
    import click

    click.echo(message, err=True)


def run_benchmark(cfg: BenchmarkConfig, model: Any = None) -> list[dict]:
    """Run everything the config asks for; print the table; write Parquet + PNG. Returns the rows. ``model``: the
    model of ``cfg.checkpoint`` when the caller loaded it (every backend's engines are built from it)."""
    import click

    from pipeline.io.decode import dali_available
    from pipeline.model.checkpoint import load_model
    from pipeline.runtime import load_engine

    model = load_model(cfg.checkpoint) if model is None else model

    decoders = list(cfg.decoders) or (["cpu", "dali"] if dali_available() else ["cpu"])
    rows: list[dict] = []
    memory: dict | None = None
    with tempfile.TemporaryDirectory(prefix="sris-bench-") as tmp:
        work = Path(tmp)
        secret_path = work / "secret.png"
        from pipeline.io.encode import encode_png

        secret_path.write_bytes(encode_png(photo(cfg.size, cfg.size, 99)))
        secret = secret_path.read_bytes()
        backends = available_backends(cfg.backends)
        layer_sets = list(cfg.layers) or ["all"]
        if "digital" in layer_sets and model.digital is None:
            raise ValueError("--layers digital needs a model with the digital layer")
        for mp in cfg.megapixels or (None,):
            h, w = dims_for(mp, cfg.size)
            shard = write_shard(work / f"in-{h}x{w}" / "bench.tar", cfg.images, h, w)
            click.echo(f"measuring invisible-watermark dwtDct {w}x{h} (one thread) ...", err=True)
            reference = dwtdct_ips(shard)
            if reference is None:
                click.echo("no dwtDct ratio (invisible-watermark not installed, or images under 256 px)", err=True)
            for backend, layers in ((b, ly) for b in backends for ly in layer_sets):
                try:
                    engine = load_engine(backend, model, cfg.size, engines_dir=cfg.engines_dir, notify=_say)
                except Exception as exc:  # a backend that does not load here is reported, not fatal
                    click.echo(f"skipping backend {backend}: {exc}", err=True)
                    continue
                for dec in decoders:
                    what = f"{backend}/{engine.info.precision} layers={layers} decoder={dec} {w}x{h}"
                    click.echo(f"measuring {what} ...", err=True)
                    r = measure(cfg, engine, dec, shard, secret, work / f"{backend}-{layers}-{dec}-{h}x{w}", layers)
                    ratio = None if reference is None else r["end_to_end_ips"] / reference
                    rows.append(
                        {
                            "backend": backend,
                            "precision": engine.info.precision,
                            "layers": layers,
                            "dwtdct_ips": reference,
                            "ratio_to_dwtdct": ratio,
                            "decoder": dec,
                            "size": cfg.size,
                            "width": w,
                            "height": h,
                            "megapixels": w * h / 1e6,
                            "images": cfg.images,
                            "batch_size": cfg.batch_size,
                            "workers": cfg.workers or os.cpu_count(),
                            **r,
                        }
                    )
        if cfg.memory_mp:
            backend = backends[0] if backends else "torch"
            click.echo(f"memory check: {cfg.memory_images} photos of {cfg.memory_mp} MP ({backend}) ...", err=True)
            memory = memory_check(cfg, backend, secret_path, work)
    peak = peak_rss_mb()
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "python": platform.python_version(),
        "peak_rss_mb_benchmark": peak,
        "created_at": datetime.now(UTC).isoformat(),
    }
    print_table(rows, memory, peak)
    if rows or memory:
        write_outputs(cfg.out, rows, memory, meta)
    return rows


def print_table(rows: list[dict], memory: dict | None, peak: float) -> None:
    import click

    head = f"{'backend':14} {'layers':8} {'decoder':8} {'input':>11} " + " ".join(f"{s:>10}" for s in STAGES)
    click.echo(
        "\nimages/s per stage (each alone) and end to end (all stages overlapping); x dwtDct: end to end over "
        f"invisible-watermark's dwtDct embed (one thread, decoded images)\n{head} {'end2end':>8} {'x dwtDct':>8}  bound"
    )
    for r in rows:
        stages = " ".join(f"{r[f'{s}_ips']:>10.1f}" for s in STAGES)
        backend = f"{r['backend']}/{r['precision']}"
        ratio = "-" if r.get("ratio_to_dwtdct") is None else f"{r['ratio_to_dwtdct']:.2f}"
        click.echo(
            f"{backend:14} {r.get('layers', 'all'):8} {r['decoder']:8} {r['width']:>5}x{r['height']:<5} {stages} "
            f"{r['end_to_end_ips']:>8.1f} {ratio:>8}  {r['bound_by']}"
        )
    for r in {(r["width"], r["height"]): r for r in rows if r.get("dwtdct_ips")}.values():
        click.echo(f"invisible-watermark dwtDct embed {r['width']}x{r['height']}: {r['dwtdct_ips']:.1f} images/s")
    click.echo(f"peak RSS of the benchmark process: {peak:.0f} MB")
    if memory:
        click.echo(
            f"memory check: {memory['images']} photos of {memory['width']}x{memory['height']} "
            f"({memory['megapixels']:g} MP): peak RSS {memory['peak_rss_mb']:.0f} MB, "
            f"{memory['images_per_s']:.2f} images/s incl. start-up"
        )


def write_outputs(out: str, rows: list[dict], memory: dict | None, meta: dict) -> None:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import click
    import matplotlib.pyplot as plt
    import pyarrow as pa
    import pyarrow.parquet as pq

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    records = [{**r, "kind": "stages"} for r in rows] + ([{**memory, "kind": "memory"}] if memory else [])
    columns = list(dict.fromkeys(k for r in records for k in r))  # pyarrow would take the first row's keys only
    table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in records])
    table = table.replace_schema_metadata({b"sris.benchmark": json.dumps(meta).encode()})
    pq.write_table(table, outdir / f"benchmark-{stamp}.parquet")
    if rows:
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.9 * len(rows)))
        labels = [*STAGES, "end_to_end"]
        height = 0.8 / len(rows)
        for i, r in enumerate(rows):
            vals = [min(r[f"{s}_ips"], 1e6) for s in labels]
            ys = np.arange(len(labels)) + i * height
            ax.barh(
                ys,
                vals,
                height=height,
                label=f"{r['backend']}/{r['precision']} {r.get('layers', 'all')} {r['decoder']} "
                f"{r['width']}x{r['height']}",
            )
        refs = {(r["width"], r["height"]): r["dwtdct_ips"] for r in rows if r.get("dwtdct_ips")}
        for k, ((w, h), ips) in enumerate(refs.items()):
            ax.axvline(ips, color="k", ls=":" if k else "--", lw=1, label=f"invisible-watermark dwtDct {w}x{h}")
        ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, labels)
        ax.set_xscale("log")
        ax.set_xlabel("images/s (log scale)")
        ax.invert_yaxis()
        ax.legend(fontsize=8)
        ax.set_title(f"embed job, per stage and end to end ({meta['machine']})")
        fig.tight_layout()
        fig.savefig(outdir / f"benchmark-{stamp}.png", dpi=100)
        plt.close(fig)
    click.echo(f"wrote {outdir}/benchmark-{stamp}.parquet" + (" and .png" if rows else ""))
