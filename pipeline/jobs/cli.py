"""Click commands ``embed``, ``extract`` and ``benchmark`` (registered lazily by pipeline/cli.py)."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import click

from pipeline import IMPORTED_AT
from pipeline.io.decode import DECODERS
from pipeline.io.encode import DEFAULT_JPEG_QUALITY, DEFAULT_PNG_LEVEL, FORMATS, LOSSLESS

EXIT_CODES_HELP = """
\b
Exit status:
  0    every image was processed
  1    the job failed: bad configuration, unreadable source or checkpoint, engine error, or a shard that could
       not be completed (its partial output is discarded; rerun to redo it)
  2    usage error: bad options, a --shards path that does not exist, an --out that is a file, secrets that do
       not fit the model
  3    the job finished but some images failed: see the rows with status = 'error' in the results Parquet
  130  interrupted (Ctrl-C): complete shards are kept; the same command resumes the job
"""

# ``pipeline.runtime.probe.BACKENDS`` plus auto (not imported: --help stays light).
BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")
BACKENDS_HELP = "Engine backend; auto takes the first usable one of tensorrt, openvino, onnxruntime, torch."


def samples_dir() -> Path:
    """The sample shards shipped inside the package."""
    return Path(str(resources.files("pipeline") / "samples"))


def _common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--shards",
            "src",
            help="Input: a folder or s3://bucket/prefix of WebDataset *.tar shards, or a folder of images (one shard).",
        ),
        click.option("--out", "dst", required=True, help="Output folder or s3://bucket/prefix."),
        click.option("--samples", is_flag=True, help="Use the sample shards shipped with the package as --shards."),
        click.option(
            "--backend",
            default="auto",
            show_default=True,
            type=click.Choice(BACKENDS, case_sensitive=False),
            help=BACKENDS_HELP,
        ),
        click.option(
            "--checkpoint",
            type=click.Path(dir_okay=False),
            help="Model checkpoint file, or a shipped model by name (k1, k2, k4) [default: k1].",
        ),
        click.option(
            "--engines-dir",
            default="engines",
            show_default=True,
            help="Folder of built engines (onnxruntime/openvino/tensorrt; missing ones are built there).",
        ),
        click.option("--device", help="cpu, cuda, cuda:1 ... [default: the backend's choice]."),
        click.option("--precision", help="fp32, fp16, bf16 [default: the backend's choice]."),
        click.option(
            "--decoder",
            default="auto",
            show_default=True,
            type=click.Choice(DECODERS),
            help="auto: DALI on a GPU when installed, else simplejpeg/Pillow in a thread pool.",
        ),
        click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 1024)),
        click.option("--workers", type=click.IntRange(1, 256), help="Decode/encode threads [default: CPU cores]."),
        click.option(
            "--format",
            "fmt",
            default="png",
            show_default=True,
            type=click.Choice(FORMATS),
            help="Output format (JPEG is lossy and weakens the hidden secret).",
        ),
        click.option(
            "--png-level",
            default=DEFAULT_PNG_LEVEL,
            show_default=True,
            type=click.IntRange(0, 9),
            help="PNG deflate level, lossless at any level: 0 stores, 1-3 ISA-L (fast), 4-9 zlib (slow, rarely "
            "smaller on photos).",
        ),
        click.option("--jpeg-quality", default=DEFAULT_JPEG_QUALITY, show_default=True, type=click.IntRange(1, 100)),
        click.option(
            "--size",
            default=256,
            show_default=True,
            type=click.IntRange(16, 4096),
            help="Network size N (the engine runs at N x N; the residual is carried to full resolution).",
        ),
        click.option(
            "--max-megapixels",
            default=100.0,
            show_default=True,
            type=click.FloatRange(min=0.001),
            help="Refuse larger images (checked from the header, before decoding).",
        ),
        click.option("--force", is_flag=True, help="Redo every shard, even those already completed."),
        click.option(
            "--runner",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: this machine; ray: a Ray cluster, one shard per worker (docs/scale-out.md).",
        ),
        click.option(
            "--ray-address",
            help="With --runner ray: Ray's address: auto (the cluster of this node), ray://HOST:10001 (Ray Client) "
            "[default: RAY_ADDRESS, else a new local cluster].",
        ),
        click.option(
            "--ray-actors",
            type=click.IntRange(1, 100_000),
            help="With --runner ray: workers, i.e. shards in flight [default: one per GPU, else per CPU core].",
        ),
        click.option(
            "--ray-gpus-per-actor",
            type=click.FloatRange(0, 8),
            help="With --runner ray: GPUs per worker, 0.5 = two per GPU [default: 1 when the cluster has GPUs].",
        ),
        click.option("--progress/--no-progress", default=None, help="Progress bar [default: when on a terminal]."),
        click.option(
            "--key-file",
            type=click.Path(dir_okay=False),
            help="The digital layer's key: a file of 64 hex characters (`python -m pipeline keygen KEYFILE`) "
            "[default: the SRIS_KEY environment variable (a key file's path or the hex), else the documented public "
            "key, with which anyone can read the mark]. Only the key's id is ever written down.",
        ),
        click.option(
            "--layers",
            type=click.Choice(("all", "digital")),
            default="all",
            show_default=True,
            help="all: the analog network and the digital layer (models with one); digital: the digital layer "
            "alone, no network runs (robustness only, at block-DCT speed).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _fail(message: str) -> NoReturn:
    from pipeline.jobs.common import EXIT_FAILED

    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILED)


def _say(message: str) -> None:
    """A progress line: stderr, so that stdout keeps only the summary."""
    click.echo(message, err=True)


def _as_usage_error(check: Callable[..., None], *args: Any) -> None:
    """Run a job's option check; its ``JobUsageError`` is a wrong command line: click's usage error (exit 2)."""
    from pipeline.jobs.common import JobUsageError

    try:
        check(*args)
    except JobUsageError as exc:
        raise click.UsageError(str(exc)) from None


def _local(url: str) -> bool:
    return "://" not in url


def _read_images(paths: tuple[str, ...], option: str) -> list[bytes]:
    """The bytes of each image an option names; a path that is missing, a folder or not a decodable image is a usage
    error (exit 2) naming the option and the path, before any engine is loaded."""
    from pipeline.io.decode import ImageDecodeError, decode_image
    from pipeline.io.filesystem import read_bytes

    out = []
    for p in paths:
        if _local(p) and not Path(p).is_file():
            what = "a folder, not an image" if Path(p).is_dir() else "no such file"
            raise click.UsageError(f"{option} {p}: {what}")
        try:
            data = read_bytes(p)
        except OSError as exc:
            _fail(f"{option} {p}: cannot read it ({getattr(exc, 'strerror', None) or exc})")
        try:
            decode_image(data)
        except ImageDecodeError as exc:
            why = str(exc) if str(exc).startswith("not an image") else f"not a usable image ({exc})"
            raise click.UsageError(f"{option} {p}: {why}") from None
        out.append(data)
    return out


def check_out(dst: str, option: str = "--out") -> None:
    """A local output folder must be a folder, or a path that can become one: refuse a file there or above it."""
    if not _local(dst):
        return
    path = Path(dst)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise click.UsageError(f"{option} {dst} is a file" if p == path else f"{option} {dst}: {p} is a file")
            if not os.access(p, os.W_OK | os.X_OK):
                _fail(f"{option} {dst}: no permission to write in {p}")
            return


def check_shards(src: str, dst: str) -> None:
    """A local --shards path must exist and hold shards or images; it must not be the output folder."""
    if not _local(src):
        return
    from pipeline.io.listing import list_shards

    try:
        list_shards(src)
    except FileNotFoundError as exc:
        raise click.UsageError(f"--shards {exc}") from None
    if _local(dst) and Path(dst).resolve() == Path(src).resolve():
        raise click.UsageError(f"--out {dst} is the --shards folder: the outputs would replace the inputs")


def load_job_model(checkpoint: str | None) -> Any:
    """The job's model, loaded once (one read, one hash of the file) before any engine is built, so that the
    options that depend on it are checked first; the engines are built from it and its stages run on it."""
    from pipeline.model.checkpoint import CheckpointError, load_model
    from pipeline.runtime.cli import check_checkpoint_exists, checkpoint_message

    check_checkpoint_exists(checkpoint)
    try:
        return load_model(checkpoint)
    except CheckpointError as exc:
        _fail(checkpoint_message(checkpoint, exc))


def _start_decoder_early() -> None:
    """Start the embed check's LDPC worker process as the job starts, where one runs (``channel.DecodeWorkers``;
    none by default where the C decoder is built): its 0.5 s of
    imports then run beside this process's own start-up, on a core that would idle, rather than beside the first
    batches. Measured on 288 images of 256 px, 2 cores: the job took 0.3 s less (``docs/model.md``). The model
    is not loaded yet: ``_decoder_for`` ends the worker where the job needs none."""
    from pipeline.model.digital.channel import WORKER

    WORKER.start()


def _decoder_for(engine: Any, settings: Any, work: bool) -> None:
    """The LDPC worker for an embed job's check, once its engine is loaded: given the layer's codes where the job
    checks lossless stegos (a digital layer, a lossless format: its check decodes in the worker, ``verify_batch``)
    and has ``work``; ended otherwise."""
    from pipeline.model.digital.channel import WORKER

    if work and engine.digital and settings.lossless:
        engine.cpu_digital.start_decoder()
    else:
        WORKER.stop()


def run_job(
    kw: dict[str, Any], make_job: Callable[..., Any], check_model: Callable[[Any], None], writes: bool = False
) -> None:
    """Check the options, load the engine, build the job, run it, write the manifest, print the summary, exit.

    ``check_model(config)`` checks the options that depend on the model (how many secrets it hides) and raises
    ``click.UsageError``; it runs before any engine is loaded or built. ``writes``: the embed job, which with a
    shipped model whose network writes nothing runs on a ``DigitalEngine`` (no torch unless an image needs it).
    """
    from pipeline.jobs.batch import JobSettings

    t_start = time.perf_counter()
    if kw["samples"] and not kw["src"]:
        kw["src"] = str(samples_dir() / "shards")
    if not kw["src"]:
        raise click.UsageError("give --shards SRC (or --samples)")
    settings = JobSettings(
        size=kw["size"],
        fmt=kw["fmt"],
        png_level=kw["png_level"],
        jpeg_quality=kw["jpeg_quality"],
        max_pixels=int(kw["max_megapixels"] * 1e6),
        upsample=kw.get("upsample") or "exact",
        layers=kw["layers"],
    )
    use_ray = kw["runner"] == "ray"
    if not use_ray and any(kw[k] is not None for k in ("ray_address", "ray_actors", "ray_gpus_per_actor")):
        raise click.UsageError("--ray-address, --ray-actors and --ray-gpus-per-actor go with --runner ray")
    check_out(kw["dst"])
    check_shards(kw["src"], kw["dst"])
    key = _job_key(kw["key_file"])
    model, card_model = None, None
    if writes and not use_ray and kw["backend"] == "auto" and not kw["device"] and not kw["precision"]:
        from pipeline.runtime.digital_engine import network_free_model

        card_model = network_free_model(kw["checkpoint"], kw["layers"], kw["size"])
    if card_model is not None:
        check_model(card_model.config)
    else:
        model = load_job_model(kw["checkpoint"])
        check_model(model.config)
        if model.config.digital.writes_alone(kw["layers"]) and kw["backend"] == "auto":
            # The network writes nothing: no engine to build; the torch model serves a full-size compose or a lossy
            # output's check.
            kw["backend"] = "torch"

    from pipeline.io.decode import make_decoder
    from pipeline.jobs.common import EXIT_INTERRUPTED, JobError, JobUsageError
    from pipeline.jobs.runners import LocalRunner
    from pipeline.model.shipped import CheckpointError
    from pipeline.runtime import load_engine
    from pipeline.runtime.cli import checkpoint_message

    job = None
    try:
        if use_ray:
            from pipeline.jobs.ray_runner import EngineSpec, RayRunner

            spec = EngineSpec(
                kw["backend"], kw["checkpoint"], kw["size"], kw["device"], kw["precision"], kw["engines_dir"],
                kw["key_file"],
            )  # fmt: skip
            engine = spec.planning_engine(model)  # the driver only plans; every worker loads `spec` on its own node
            runner = RayRunner(
                spec, address=kw["ray_address"], actors=kw["ray_actors"], cpus_per_actor=kw["workers"],
                gpus_per_actor=kw["ray_gpus_per_actor"], decoder=kw["decoder"], batch_size=kw["batch_size"],
                progress=kw["progress"],
            )  # fmt: skip
        elif card_model is not None:  # on the layer's own grid: nothing to check by a forward pass
            from pipeline.runtime.digital_engine import DigitalEngine

            engine = DigitalEngine(card_model, kw["size"], key)
            runner = LocalRunner(workers=kw["workers"], batch_size=kw["batch_size"], progress=kw["progress"])
        else:
            engine = load_engine(
                kw["backend"],
                model,
                kw["size"],
                kw["device"],
                kw["precision"],
                engines_dir=kw["engines_dir"],
                notify=_say,
                key=key,
            )
            runner = LocalRunner(workers=kw["workers"], batch_size=kw["batch_size"], progress=kw["progress"])
        if card_model is None:
            _check_size(engine)
        decoder_name = "cpu" if use_ray else kw["decoder"]
        decoder = make_decoder(decoder_name, kw["workers"], settings.max_pixels, batch_size=kw["batch_size"])
        job = make_job(engine=engine, settings=settings, decoder=decoder)
        job.plan()
        if writes and not use_ray:
            _decoder_for(engine, settings, bool(job.todo))
        for line in job.redo_lines():
            _say(line)
        job.engine_build_seconds = engine.build_seconds
        job.startup_seconds = time.perf_counter() - min(t_start, IMPORTED_AT)  # the imports too
        runner.run(job)
        job.write_manifest()
    except KeyboardInterrupt:
        if job is None or not (job.todo or job.already_done):
            _say(
                "interrupted before the job started: nothing was written to --out (engines already built are kept). "
                "Run the same command again."
            )
        else:
            _say(job.interrupted_message())
        sys.exit(EXIT_INTERRUPTED)
    except JobUsageError as exc:
        raise click.UsageError(str(exc)) from None
    except CheckpointError as exc:
        _fail(checkpoint_message(kw["checkpoint"], exc))
    except OSError as exc:
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
    except (JobError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    click.echo(job.summary())
    for f in job.totals.shards_failed:
        click.echo(f"error: shard {f['shard']} not completed ({f['error']}); rerun to redo it", err=True)
    sys.exit(job.totals.exit_code())


def _job_key(key_file: str | None) -> Any:
    """The digital layer's key for the job: --key-file, else SRIS_KEY, else the public key; a key file that is
    missing or not 64 hex characters is a usage error (exit 2)."""
    from pipeline.model.digital.keys import KeyFileError, resolve_key

    try:
        return resolve_key(key_file)
    except KeyFileError as exc:
        option = "--key-file" if key_file else "SRIS_KEY"
        raise click.UsageError(f"{option}: {exc}") from None


def _check_size(engine: Any) -> None:
    """One tiny forward pass: catches a size the model cannot take (and warms the engine up)."""
    import numpy as np

    n, k = engine.info.size, engine.info.num_secrets
    try:
        engine.embed(np.zeros((1, 3, n, n), np.float32), np.zeros((1, 3 * k, n, n), np.float32))
    except Exception as exc:
        raise ValueError(f"the model cannot run at --size {n}: {exc}") from exc


@click.command(epilog=EXIT_CODES_HELP)
@_common_options
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    help="Secret image hidden in every cover (repeat K times for a model with K secrets). Local path or s3:// URL.",
)
@click.option(
    "--secret-ext",
    "secret_exts",
    multiple=True,
    help="Take each sample's own secret from its member KEY.EXT (e.g. secret.png); repeat K times.",
)
@click.option(
    "--upsample",
    type=click.Choice(("exact", "smooth")),  # pipeline.jobs.resample.UPSAMPLE (not imported: --help stays light)
    default="exact",
    show_default=True,
    help="How the network's change to the cover (made at --size) reaches full size. exact: a receiver that brings "
    "the stego back to --size sees the network's own stego, so the model's figures hold at any size; smooth: "
    "bilinear, a smaller change to the cover and a weaker secret (the analog model card has the figures).",
)
@click.option(
    "--message",
    "message_template",
    help="A short text each image carries in the digital layer beside the secret (at most 32 bytes, UTF-8): a "
    "template over the sample's {key} and {shard}, e.g. 'asset-{key}'. extract writes it to the results.",
)
@click.option(
    "--message-csv",
    type=click.Path(dir_okay=False),
    help="Each image's message from a CSV file with the columns key and message (keys it lacks carry none).",
)
def embed(
    secrets: tuple[str, ...],
    secret_exts: tuple[str, ...],
    message_template: str | None,
    message_csv: str | None,
    **kw: Any,
) -> None:
    """Hide secret image(s) in every image of every shard: one output shard + one results Parquet per input shard,
    and OUT/manifest.json (the job record: configuration, model and engine hashes, versions, totals).

    \b
    Example (the sample shards shipped with the package):
      python -m pipeline embed --samples --out out/
    Example (S3, endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...):
      python -m pipeline embed --shards s3://bucket/in --out s3://bucket/out --secret logo.png

    Completed shards whose results match the configuration (model, secrets, size, format) are skipped, so a rerun
    after a crash, or over a prefix that gained new shards, processes only what is missing.
    """
    if kw["runner"] != "ray" and kw["fmt"] in LOSSLESS:  # the jobs whose check may decode in the worker
        _start_decoder_early()
    from pipeline.jobs.embed import EmbedJob, check_secret_options

    if kw["samples"] and not secrets and not secret_exts:
        secrets = (str(samples_dir() / "secret.png"),)

    def check(k: int | None) -> None:
        _as_usage_error(check_secret_options, len(secrets), list(secret_exts), k)

    check(None)
    blobs = _read_images(secrets, "--secret")
    messages = _message_source(message_template, message_csv)
    run_job(
        kw,
        functools.partial(
            EmbedJob,
            kw["src"] or str(samples_dir() / "shards"),
            kw["dst"],
            secrets=blobs,
            secret_exts=list(secret_exts),
            force=kw["force"],
            messages=messages,
        ),
        lambda config: check(config.num_secrets),
        writes=True,
    )


def _message_source(template: str | None, csv_path: str | None) -> Any:
    """The embed job's per-image messages (``--message`` / ``--message-csv``), or None; a bad template or file is a
    usage error (exit 2)."""
    from pipeline.jobs.messages import MessageError, MessageSource
    from pipeline.model.digital.config import DigitalConfig

    if template is not None and csv_path is not None:
        raise click.UsageError("--message and --message-csv exclude each other: give one")
    room = DigitalConfig().max_message
    try:
        if template is not None:
            return MessageSource.from_template(template, room)
        if csv_path is not None:
            if not Path(csv_path).is_file():
                raise click.UsageError(f"--message-csv {csv_path}: no such file")
            return MessageSource.from_csv(Path(csv_path).read_bytes(), csv_path, room)
    except MessageError as exc:
        raise click.UsageError(str(exc)) from None
    return None


@click.command(epilog=EXIT_CODES_HELP)
@_common_options
@click.option(
    "--reference",
    "references",
    multiple=True,
    help="The original secret image(s), K of them, to score "
    "the revealed secrets against (psnr/ssim_secret in the results).",
)
def extract(references: tuple[str, ...], **kw: Any) -> None:
    """Reveal the hidden secret(s) of every image of every shard into KEY.secret.png (KEY.secret1.png ... for K > 1).

    Per input shard: an output shard of the secrets and a results Parquet; and OUT/manifest.json, the job record.

    \b
    Example:
      python -m pipeline extract --shards out/ --out revealed/ --reference logo.png
    """
    from pipeline.jobs.extract import ExtractJob, check_reference_count

    def check(config: Any) -> None:
        _as_usage_error(check_reference_count, len(references), config.num_secrets)

    blobs = _read_images(references, "--reference")
    run_job(
        kw,
        functools.partial(
            ExtractJob, kw["src"] or str(samples_dir() / "shards"), kw["dst"], references=blobs, force=kw["force"]
        ),
        check,
    )


@click.command()
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096), help="Network size N.")
@click.option("--images", default=64, show_default=True, type=click.IntRange(1, 100000), help="Images per run.")
@click.option(
    "--megapixels",
    type=float,
    multiple=True,
    help="Input photo size(s) in MP, 4:3; 0 = N x N photos (the default). Repeat to measure several: "
    "--megapixels 0 --megapixels 1.",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(BACKENDS[1:], case_sensitive=False),
    help="Backend(s) to measure; repeat for several [default: every one that loads].",
)
@click.option(
    "--decoder",
    "decoders",
    multiple=True,
    type=click.Choice(["cpu", "dali"]),
    help="Decoder(s) to measure [default: cpu, plus dali when installed].",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Model checkpoint file, or a shipped model by name (k1, k2, k4) [default: k1].",
)
@click.option(
    "--engines-dir",
    default="engines",
    show_default=True,
    help="Folder of built engines (missing ones are built there; another checkpoint needs another folder).",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 1024))
@click.option("--workers", type=click.IntRange(1, 256), help="Decode/encode threads [default: CPU cores].")
@click.option(
    "--memory-check",
    "memory_mp",
    type=float,
    default=None,
    help="Also run the job on a shard of photos of this many MP (e.g. 50) in a subprocess and report its peak RSS.",
)
@click.option("--memory-images", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--layers",
    multiple=True,
    type=click.Choice(["all", "digital"]),
    help="Which paths the job runs, as embed's --layers; repeat to measure both [default: all]. Each row is also "
    "divided by invisible-watermark's dwtDct embed speed on the same images when that library is installed.",
)
@click.option(
    "--out",
    default="benchmark-results",
    show_default=True,
    help="Folder the Parquet and PNG go into (relative to the working folder).",
)
def benchmark(**kw: Any) -> None:
    """Images/s per stage (read, decode, preprocess, embed, compose, verify, encode, write) and end to end, per
    backend and decoder; prints a table and writes a Parquet + PNG chart. Optionally a peak-RSS check on large photos.

    \b
    Example:
      python -m pipeline benchmark --size 256 --images 64 --megapixels 1 --memory-check 50
    """
    from pipeline.jobs.benchmark import BenchmarkConfig, run_benchmark
    from pipeline.model.checkpoint import CheckpointError
    from pipeline.runtime.cli import checkpoint_message

    check_out(kw["out"])
    model = load_job_model(kw["checkpoint"])
    try:
        run_benchmark(BenchmarkConfig(**kw), model)
    except KeyboardInterrupt:
        from pipeline.jobs.common import EXIT_INTERRUPTED

        _say("interrupted: nothing was written to --out")
        sys.exit(EXIT_INTERRUPTED)
    except CheckpointError as exc:
        _fail(checkpoint_message(kw["checkpoint"], exc))
    except (ValueError, RuntimeError, OSError) as exc:
        _fail(str(exc))
