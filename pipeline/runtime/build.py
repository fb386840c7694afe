"""Build engines from a model, check them against torch, record them in its manifest; open them safely.

``build_engines`` is what ``python build_engines.py`` runs. ``open_engines`` is what ``load_engine`` runs: in the
model's own subfolder of the engines folder (``manifest.model_folder``) it checks the manifest against the model in
use, builds a missing engine on first use (under the folder's exclusive lock, so concurrent processes build it once),
and loads the files under the shared lock. Both build from the model the caller loaded: the checkpoint is not read
again.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline.model.config import ModelConfig
from pipeline.model.shipped import CheckpointError, file_sha256, resolve_checkpoint
from pipeline.runtime.errors import BackendUnavailableError, EngineError, EngineMismatchError, EngineNotBuiltError
from pipeline.runtime.manifest import (
    PARTS,
    EngineEntry,
    check_layout,
    engine_filename,
    engine_key,
    engines_lock,
    model_folder,
    read_manifest,
    rebuild_command,
    staging_dir,
    write_manifest,
)
from pipeline.runtime.probe import library_versions, normalize_precision, openvino_cpu_precisions

log = logging.getLogger(__name__)

T = TypeVar("T")

TARGETS = ("onnx", "openvino", "tensorrt")
BUILDABLE = {"onnx": ("fp32",), "openvino": ("fp32", "bf16", "fp16", "int8"), "tensorrt": ("fp16", "fp32")}
DEFAULT_BATCH_RANGE = (1, 8, 32)  # TensorRT (min, opt, max); ONNX and OpenVINO take any batch
# Largest max |engine - torch| on [0, 1] outputs accepted at build time; None = recorded, not enforced (bf16 and
# int8 are judged in PSNR on real photos by the tests and by `validate --backend`, not on random inputs).
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2, "bf16": None, "int8": None}


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint engines are built from: its path, sha256 and model config."""

    path: Path
    sha256: str
    config: ModelConfig

    @classmethod
    def load(cls, checkpoint: str | os.PathLike[str] | None) -> CheckpointRef:
        """Read a checkpoint's identity only (the ``engines`` listing); a job has the model: ``of``."""
        path = resolve_checkpoint(checkpoint)
        if not path.is_file():
            hint = " (the shipped default model is not installed yet; pass --checkpoint)" if not checkpoint else ""
            raise CheckpointError(f"checkpoint not found: {path}{hint}")
        from pipeline.model.checkpoint import read_checkpoint  # torch: only where engines are listed or built

        payload = read_checkpoint(path)
        return cls(path, file_sha256(path), ModelConfig.from_dict(payload["config"]))

    @classmethod
    def of(cls, model: Any) -> CheckpointRef:
        """The checkpoint a model was loaded from (``load_model`` records its path and sha256 on it)."""
        sha256 = getattr(model, "checkpoint_sha256", None)
        if not sha256:
            raise ValueError("engines are built from a model loaded by load_model: its checkpoint's sha256 keys them")
        return cls(Path(model.checkpoint_path), sha256, model.config)

    def check_size(self, size: int) -> None:
        m = self.config.multiple
        if size < m or size % m:
            raise ValueError(f"size {size} is not a positive multiple of {m}, which this model needs")


@dataclass(frozen=True)
class BuildOutcome:
    """One line of a build report: ``status`` is built, up to date, skipped or failed."""

    key: str
    status: str
    detail: str = ""
    seconds: float = 0.0


def default_precisions(target: str) -> tuple[str, ...]:
    """What ``build_engines`` builds when no precision is asked: fp32 ONNX; OpenVINO fp32 (+ bf16 where this CPU
    runs it); TensorRT fp16."""
    if target == "openvino":
        try:
            return ("fp32", "bf16") if "bf16" in openvino_cpu_precisions() else ("fp32",)
        except ImportError:
            return ("fp32",)
    return {"onnx": ("fp32",), "tensorrt": ("fp16",)}[target]


def target_unavailable(target: str) -> str:
    """Why ``target`` cannot be built on this machine ("" when it can)."""
    import importlib.util

    if target in ("onnx", "openvino") and importlib.util.find_spec("onnxscript") is None:
        return "the ONNX exporter needs onnxscript (pip install onnxscript)"
    if target == "openvino" and importlib.util.find_spec("openvino") is None:
        return "openvino is not installed (pip install openvino)"
    if target == "tensorrt":
        from pipeline.runtime.probe import probe_backend

        status = probe_backend("tensorrt")
        return "" if status.available else status.reason
    return ""


def entry_problem(entry: EngineEntry, engines_dir: Path, ckpt: CheckpointRef) -> tuple[str, str]:
    """("", "") when ``entry`` is usable with ``ckpt``; else (kind, message) with kind missing, stale or corrupt."""
    path = engines_dir / entry.file
    if not path.is_file() or any(not (engines_dir / f).is_file() for f in entry.extra_files):
        return "missing", f"{path} (or a file beside it) is missing"
    if entry.checkpoint_sha256 != ckpt.sha256:
        return "stale", (
            f"{path} was built from checkpoint {entry.checkpoint} (sha256 {entry.checkpoint_sha256[:12]}"
            f"), not from {ckpt.path} (sha256 {ckpt.sha256[:12]}) which is in use"
        )
    for name, want in {entry.file: entry.sha256, **entry.extra_files}.items():
        if file_sha256(engines_dir / name) != want:
            return "corrupt", f"{engines_dir / name} was changed after it was built (its sha256 differs)"
    if entry.format == "tensorrt" and entry.gpu:
        import torch

        from pipeline.runtime.probe import gpu_description

        if torch.cuda.is_available():
            here = {**gpu_description(), "tensorrt": _tensorrt_version()}
            for k in ("arch", "tensorrt"):
                if entry.gpu.get(k) != here.get(k):
                    return "stale", f"{path} was built for {k} {entry.gpu.get(k)}, this machine has {here.get(k)}"
    return "", ""


def _tensorrt_version() -> str:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:  # the TensorRT Python package raises bare Exceptions without its libraries
        return ""


class Builder:
    """Builds the engines of one model (loaded from ``ckpt``) at one size into its folder ``engines_dir`` (call under
    the exclusive lock)."""

    def __init__(
        self,
        ckpt: CheckpointRef,
        model: Any,
        size: int,
        engines_dir: Path,
        device: str | None = None,
        batch_range: tuple[int, int, int] = DEFAULT_BATCH_RANGE,
    ) -> None:
        ckpt.check_size(size)
        lo, opt, hi = batch_range
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got {batch_range}")
        self.ckpt, self.model, self.size, self.dir = ckpt, model, size, engines_dir
        self.device, self.batch_range = device, batch_range

    def build(self, fmt: str, precision: str, part: str, entries: dict[str, EngineEntry]) -> EngineEntry:
        """Build one engine, check it against torch, move it into place, and return its manifest entry."""
        t0 = time.perf_counter()
        with staging_dir(self.dir) as tmp:
            name = engine_filename(fmt, precision, self.size, part)
            if fmt == "onnx":
                meta, diff = self._build_onnx(part, tmp / name)
            elif fmt == "openvino":
                meta, diff = self._build_openvino(precision, part, tmp / name, entries)
            elif fmt == "tensorrt":
                meta, diff = self._build_tensorrt(precision, part, tmp / name)
            else:
                raise ValueError(f"unknown target {fmt!r}: choose {', '.join(TARGETS)}")
            tol = TOLERANCE[precision]
            if diff is not None and tol is not None and not diff <= tol:  # `not <=` also catches NaN
                raise EngineError(
                    f"{fmt} {precision} {part} differs from torch by {diff:.3g} (more than {tol:g}); "
                    "the export is wrong: not installed"
                )
            files = sorted(p.name for p in tmp.iterdir())
            extra = {f: file_sha256(tmp / f) for f in files if f != name}
            sha = file_sha256(tmp / name)
            for f in [*extra, name]:  # companions first, so the main file never points at a missing one
                os.replace(tmp / f, self.dir / f)
        lo, opt, hi = self.batch_range if fmt == "tensorrt" else (1, None, None)
        return EngineEntry(
            format=fmt,
            part=part,
            precision=precision,
            size=self.size,
            file=name,
            sha256=sha,
            checkpoint_sha256=self.ckpt.sha256,
            checkpoint=str(self.ckpt.path),
            channels=self.ckpt.config.channels,
            num_secrets=self.ckpt.config.num_secrets,
            inputs=meta["inputs"],
            outputs=meta["outputs"],
            batch_min=lo,
            batch_opt=opt,
            batch_max=hi,
            extra_files=extra,
            versions=library_versions(),
            gpu=meta.get("gpu", {}),
            verify_max_abs_diff=None if diff is None else float(diff),
            build_seconds=round(time.perf_counter() - t0, 2),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def _verify_inputs(self, part: str) -> tuple[tuple[Any, ...], np.ndarray]:
        import torch

        from pipeline.runtime.export import VERIFY_BATCH, example_inputs, io_shapes, reference_outputs

        cfg = self.ckpt.config
        ins, _ = io_shapes(cfg.channels, cfg.num_secrets, self.size, part)
        args = example_inputs(ins, VERIFY_BATCH, seed=1)
        if part == "reveal":
            # Reveal is checked on real stegos (8-bit): on random noise the carrier's pilot reads a gain near zero
            # and divides by it (floored at 0.02), so float rounding differences between runtimes are magnified
            # 50-fold on inputs no embed would ever produce.
            embed_ins, _ = io_shapes(cfg.channels, cfg.num_secrets, self.size, "embed")
            with torch.no_grad():
                stego = self.model.embed_analog(*example_inputs(embed_ins, VERIFY_BATCH, seed=1))
            args = ((stego * 255).round() / 255,)
        return args, reference_outputs(self.model, part, args)

    def _build_onnx(self, part: str, path: Path) -> tuple[dict, float | None]:
        from pipeline.runtime.export import export_onnx

        meta = export_onnx(self.model, part, self.size, path)
        try:
            import onnxruntime as ort
        except ImportError:
            return meta, None
        args, ref = self._verify_inputs(part)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = sess.run(None, {n: a.numpy() for n, a in zip(meta["inputs"], args, strict=True)})[0]
        return meta, float(np.abs(out - ref).max())

    def _build_openvino(
        self, precision: str, part: str, xml: Path, entries: dict[str, EngineEntry]
    ) -> tuple[dict, float | None]:
        from pipeline.runtime.export import OPENVINO_PRECISION, convert_openvino

        with self._onnx_source(part, entries) as source:
            if precision == "int8":
                from pipeline.runtime.quantize import quantize_openvino

                quantize_openvino(source, self.model, part, self.size, xml)
            else:
                convert_openvino(source, precision, xml)
        meta = self._io(part)
        if precision not in openvino_cpu_precisions():
            return meta, None  # built for other CPUs; it cannot be checked here
        import openvino as ov

        args, ref = self._verify_inputs(part)
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision]})
        out = compiled({n: a.numpy() for n, a in zip(meta["inputs"], args, strict=True)})[0]
        return meta, float(np.abs(out - ref).max())

    def _io(self, part: str) -> dict:
        from pipeline.runtime.export import io_shapes

        ins, outs = io_shapes(self.ckpt.config.channels, self.ckpt.config.num_secrets, self.size, part)
        return {"inputs": ins, "outputs": outs}

    @contextlib.contextmanager
    def _onnx_source(self, part: str, entries: dict[str, EngineEntry]) -> Iterator[Path]:
        """The fp32 ONNX graph to convert: the registered one when it is current, else a fresh one.

        A missing ONNX engine is built and registered on the way. One built from another checkpoint is left
        alone (replacing it is the user's call): a private export, deleted afterwards, is converted instead.
        """
        key = engine_key("onnx", "fp32", self.size, part)
        entry = entries.get(key)
        kind = entry_problem(entry, self.dir, self.ckpt)[0] if entry else "missing"
        if kind == "missing":
            log.info("building %s first (the OpenVINO IR is converted from it)", key)
            entries[key] = self.build("onnx", "fp32", part, entries)
            write_manifest(self.dir, entries)
            kind = ""
        if kind == "":
            yield self.dir / entries[key].file
            return
        from pipeline.runtime.export import export_onnx

        with staging_dir(self.dir) as tmp:
            export_onnx(self.model, part, self.size, tmp / "source.onnx")
            yield tmp / "source.onnx"

    def _build_tensorrt(self, precision: str, part: str, path: Path) -> tuple[dict, float | None]:
        import torch

        from pipeline.runtime.export import compile_tensorrt
        from pipeline.runtime.probe import gpu_description, import_torch_tensorrt

        if not torch.cuda.is_available():
            raise BackendUnavailableError("building TensorRT engines needs a CUDA GPU, and torch sees none")
        device = self.device if self.device and self.device.startswith("cuda") else "cuda"
        # compile_tensorrt moves and casts what it compiles: a copy, so the reference stays the fp32 CPU model.
        meta = compile_tensorrt(copy.deepcopy(self.model), part, self.size, precision, path, device, self.batch_range)
        meta["gpu"] = {**gpu_description(device), "tensorrt": _tensorrt_version()}
        args, ref = self._verify_inputs(part)
        module = import_torch_tensorrt().load(str(path)).module()
        dtype = torch.float16 if precision == "fp16" else torch.float32
        with torch.inference_mode():
            out = module(*(a.to(device, dtype) for a in args))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return meta, float(np.abs(out.float().cpu().numpy() - ref).max())


def _plan(targets: Sequence[str], precisions: Sequence[str] | None) -> tuple[list[tuple[str, str]], list[BuildOutcome]]:
    """(target, precision) pairs to build, and the skipped ones with the reason."""
    todo, skipped = [], []
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}: choose from {', '.join(TARGETS)}")
        why = target_unavailable(target)
        wanted = [normalize_precision(p) for p in precisions] if precisions else list(default_precisions(target))
        for precision in wanted:
            key = f"{target}/{precision}"
            if why:
                skipped.append(BuildOutcome(key, "skipped", f"skipped because {why}"))
            elif precision not in BUILDABLE[target]:
                skipped.append(
                    BuildOutcome(
                        key,
                        "skipped",
                        f"skipped because {target} engines are built in "
                        f"{' or '.join(BUILDABLE[target])}, not {precision}",
                    )
                )
            else:
                todo.append((target, precision))
    return todo, skipped


def build_engines(
    checkpoint: str | os.PathLike[str] | Any | None = None,
    size: int = 256,
    targets: Sequence[str] = TARGETS,
    precisions: Sequence[str] | None = None,
    out: str | os.PathLike[str] = "engines",
    force: bool = False,
    device: str | None = None,
    batch_range: tuple[int, int, int] = DEFAULT_BATCH_RANGE,
    progress: bool | None = None,
) -> list[BuildOutcome]:
    """Build embed and reveal engines of ``checkpoint`` (a loaded model, or what ``load_model`` takes) for each
    target and precision into its subfolder of the engines folder ``out``.

    Engines that are already current (same checkpoint, unchanged files) are kept unless ``force``; stale ones
    (another checkpoint) are rebuilt. Targets this machine cannot build are reported as skipped, with the reason.
    An engine that fails is reported as failed and the others are still built.
    """
    from tqdm import tqdm

    from pipeline.model.checkpoint import load_model

    check_layout(out)
    model = checkpoint if isinstance(checkpoint, _module_type()) else load_model(checkpoint)
    ckpt = CheckpointRef.of(model)
    engines_dir = model_folder(out, ckpt.sha256)
    builder = Builder(ckpt, model, size, engines_dir, device, batch_range)
    todo, report = _plan(targets, precisions)
    jobs = [(t, p, part) for t, p in todo for part in PARTS]
    with engines_lock(engines_dir, exclusive=True):
        entries = read_manifest(engines_dir)
        bar = tqdm(jobs, desc="engines", unit="engine", disable=None if progress is None else not progress)
        for fmt, precision, part in bar:
            key = engine_key(fmt, precision, size, part)
            bar.set_postfix_str(key)
            entry = entries.get(key)
            if entry and not force and entry_problem(entry, engines_dir, ckpt)[0] == "":
                report.append(BuildOutcome(key, "up to date", entry.file))
                continue
            t0 = time.perf_counter()
            try:
                entries[key] = builder.build(fmt, precision, part, entries)
            except (EngineError, RuntimeError, ValueError, OSError) as exc:
                log.error("building %s failed: %s", key, exc)
                report.append(BuildOutcome(key, "failed", str(exc), time.perf_counter() - t0))
                continue
            write_manifest(engines_dir, entries)  # after every engine: an interrupted build keeps what it made
            diff = entries[key].verify_max_abs_diff
            note = f", max |diff| vs torch {diff:.2g}" if diff is not None else ", not checked on this machine"
            report.append(BuildOutcome(key, "built", entries[key].file + note, time.perf_counter() - t0))
    return sorted(report, key=lambda r: TARGETS.index(r.key.split("/")[0]))  # stable: plan order within a target


def _module_type() -> type:
    import torch

    return torch.nn.Module


def open_engines(
    fmt: str,
    precision: str,
    model: Any,
    size: int,
    engines_root: Path,
    build: bool,
    loader: Callable[[dict[str, EngineEntry], float], T],
    device: str | None = None,
    batch_range: tuple[int, int, int] = DEFAULT_BATCH_RANGE,
) -> T:
    """Check the embed and reveal engines of (``fmt``, ``precision``, ``size``) for ``model`` (loaded by
    ``load_model``) in its subfolder of ``engines_root``, and ``loader(entries, build_seconds)`` them.

    Raises ``EngineMismatchError`` for an engine of another checkpoint (or GPU/TensorRT) or one changed on disk,
    and ``EngineNotBuiltError`` for a missing one when ``build`` is False; otherwise a missing engine is built
    here from ``model``, once, even when several processes ask for it at the same moment. ``build_seconds``: the
    time this call spent building (0 when every engine was there).
    """
    ckpt = CheckpointRef.of(model)
    ckpt.check_size(size)
    check_layout(engines_root)
    engines_dir = model_folder(engines_root, ckpt.sha256)
    keys = {part: engine_key(fmt, precision, size, part) for part in PARTS}
    built = 0.0
    for _ in range(3):  # build, then load; a concurrent rebuild between the two sends us round once more
        with engines_lock(engines_dir, exclusive=False):
            entries = read_manifest(engines_dir)
            missing = _usable(entries, keys, engines_dir, ckpt, fmt, precision, size, engines_root)
            if not missing:
                return loader({part: entries[k] for part, k in keys.items()}, built)
        if not build:
            raise EngineNotBuiltError(
                f"no {fmt} {precision} engine for size {size} in {engines_dir} ({', '.join(missing)} missing). "
                f"Build it with: {rebuild_command(str(ckpt.path), size, fmt, precision, engines_root)}"
            )
        t0 = time.perf_counter()
        with engines_lock(engines_dir, exclusive=True):
            entries = read_manifest(engines_dir)
            missing = _usable(entries, keys, engines_dir, ckpt, fmt, precision, size, engines_root)
            if missing:
                builder = Builder(ckpt, model, size, engines_dir, device, batch_range)
                for key in missing:
                    log.info("engine %s is not built yet in %s: building it now (first use)", key, engines_dir)
                    part = key.rsplit("/", 1)[1]
                    entries[key] = builder.build(fmt, precision, part, entries)
                    write_manifest(engines_dir, entries)
                    log.info("built %s in %.1f s", engines_dir / entries[key].file, entries[key].build_seconds)
        built += time.perf_counter() - t0
    raise EngineError(f"the engines in {engines_dir} kept changing while loading them; is a build running?")


def _usable(
    entries: dict[str, EngineEntry],
    keys: dict[str, str],
    engines_dir: Path,
    ckpt: CheckpointRef,
    fmt: str,
    precision: str,
    size: int,
    engines_root: Path,
) -> list[str]:
    """Keys that are missing; raises ``EngineMismatchError`` for a stale or corrupt one."""
    missing = []
    for key in keys.values():
        entry = entries.get(key)
        kind, message = entry_problem(entry, engines_dir, ckpt) if entry else ("missing", "")
        if kind == "missing":
            missing.append(key)
        elif kind:
            raise EngineMismatchError(
                f"refusing engine {key}: {message}. Rebuild it with: "
                f"{rebuild_command(str(ckpt.path), size, fmt, precision, engines_root)} "
                f"(or point --engines-dir at another folder)"
            )
    return missing
