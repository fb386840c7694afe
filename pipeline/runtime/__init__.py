"""Runtime backends: one ``Engine`` interface (see ``base.py``) implemented by torch, ONNX Runtime, OpenVINO and
TensorRT. ``load_engine`` is the one entry point the jobs use; ``build_engines`` (``python build_engines.py``)
compiles the engines ahead of time.

Backend libraries are imported only when their backend is used (OpenVINO and torch-tensorrt take seconds to
import, and torch-tensorrt raises a bare ``Exception`` on a machine without the NVIDIA libraries).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.runtime.base import EmbedModule, Engine, EngineInfo, RevealModule, TorchEngine
from pipeline.runtime.errors import BackendUnavailableError, EngineError, EngineMismatchError, EngineNotBuiltError
from pipeline.runtime.probe import BACKENDS, normalize_precision, probe_backend

if TYPE_CHECKING:
    from pipeline.runtime.build import CheckpointRef

log = logging.getLogger(__name__)

ENGINE_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
# What a build of each format makes (the OpenVINO IR is converted from the ONNX graph, built on the way if missing).
BUILD_LABEL = {"onnx": "ONNX", "openvino": "ONNX/OpenVINO", "tensorrt": "TensorRT"}


def resolve_backend(backend: str = "auto", device: str | None = None) -> str:
    """``auto`` -> TensorRT on a GPU with TensorRT, else OpenVINO, else ONNX Runtime, else torch (logged).

    A named backend is returned as it is (after checking the name); ``device="cpu"`` keeps ``auto`` off the GPU.
    """
    backend = backend.strip().lower()
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose auto, {', '.join(BACKENDS)}")
        return backend
    gpu = device is not None and device.startswith("cuda")
    passed = []
    for name in BACKENDS:
        status = probe_backend(name)
        if device is not None and status.available and gpu != (status.device == "cuda"):
            passed.append(f"{name}: runs on {status.device}, {device} asked")
            continue
        if status.available:
            log.info(
                "backend auto -> %s %s on %s (%s)",
                name,
                status.version,
                status.device,
                "; ".join(passed) or "first choice",
            )
            return name
        passed.append(f"{name}: {status.reason}")
    raise BackendUnavailableError("no backend is usable: " + "; ".join(passed))


def resolve_precision(backend: str, precision: str | None, device: str) -> str:
    """The precision a backend runs (its default when None); refuses one it cannot run on this machine."""
    if backend == "torch":
        p = normalize_precision(precision or "fp32")
        allowed = ("fp32", "fp16") if device.startswith("cuda") else ("fp32",)
    elif backend == "onnxruntime":
        p, allowed = normalize_precision(precision or "fp32"), ("fp32",)
    elif backend == "openvino":
        allowed = probe_backend("openvino").precisions
        p = normalize_precision(precision) if precision else ("bf16" if "bf16" in allowed else "fp32")
    else:  # tensorrt
        p, allowed = normalize_precision(precision or "fp16"), ("fp16", "fp32")
    if p not in allowed:
        why = probe_backend(backend).reason
        raise BackendUnavailableError(
            f"the {backend} backend cannot run {p} on {device} here; it can run: {', '.join(allowed) or 'nothing'}"
            + (f" ({why})" if why else "")
        )
    return p


def torch_stages(checkpoint: str | os.PathLike[str], engine: Engine) -> None:
    """Give a compiled ``engine`` the model's analytic stages, which run in torch on the CPU in fp32 beside it: the
    restore (blind deblur, registration) before its reveal graph, detection with its calibrated threshold, and both
    with one registration search (``reveal_and_detect``)."""
    import torch

    from pipeline.model.checkpoint import load_model

    model = load_model(checkpoint).float().eval()
    cfg = model.config
    if cfg.codes.deblur.enabled or cfg.codes.register.enabled:

        def restore(stego: np.ndarray, aligned: bool = False) -> np.ndarray:
            with torch.inference_mode():
                return model.restore(torch.from_numpy(stego), aligned).numpy()

        engine.restore = restore
    if cfg.coded:

        def detect(stego: np.ndarray, threshold: float | None) -> np.ndarray:
            with torch.inference_mode():
                return model.detect(torch.from_numpy(np.ascontiguousarray(stego)), threshold).numpy()

        engine.detector = detect
        engine.detect_threshold = model.detect_threshold
    if cfg.coded and cfg.codes.register.enabled:

        def restore_and_detect(stego: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                restored, scores = model.restore_and_detect(torch.from_numpy(np.ascontiguousarray(stego)))
                return restored.numpy(), scores.numpy()

        engine.restore_and_detect = restore_and_detect


def engines_to_build(
    fmt: str, precision: str, ckpt: CheckpointRef, size: int, engines_dir: str | os.PathLike[str]
) -> list[str]:
    """Keys of the engines that loading would build now: absent from ``engines_dir`` (or its manifest).

    A cheap look before the locked check that ``open_engines`` does; a problem it cannot judge (an unreadable
    manifest, an engine of another checkpoint) counts as nothing to build: ``open_engines`` reports it.
    """
    from pipeline.runtime.build import entry_problem
    from pipeline.runtime.manifest import PARTS, engine_key, read_manifest

    try:
        entries = read_manifest(engines_dir)
    except EngineError:
        return []
    keys = [engine_key(fmt, precision, size, part) for part in PARTS]
    return [k for k in keys if k not in entries or entry_problem(entries[k], Path(engines_dir), ckpt)[0] == "missing"]


def load_engine(
    backend: str = "auto",
    checkpoint: str | None = None,
    size: int = 256,
    device: str | None = None,
    precision: str | None = None,
    engines_dir: str | None = "engines",
    *,
    build: bool = True,
    threads: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> Engine:
    """Load the embed + reveal engine for ``checkpoint`` (None = shipped default) at image size ``size``.

    Args:
        backend: auto, torch, onnxruntime, openvino or tensorrt (``resolve_backend`` says what auto picks).
        device: cpu (default for CPU backends) or cuda[:i] (TensorRT's default; torch and onnxruntime-gpu too).
        precision: fp32, bf16 or fp16; None = the backend's default (OpenVINO: bf16 where the CPU runs it, else
            fp32; TensorRT: fp16; others fp32). A precision the machine cannot run is refused, never replaced.
        engines_dir: folder with ``manifest.json`` and the built engines (not used by torch).
        build: build a missing engine now (logged), or refuse with the command that builds it.
        threads: CPU threads for ONNX Runtime / OpenVINO (default: every core this process may use).
        notify: called with a line before a missing engine is built and with another when it is done (the CLI
            prints them: a first run otherwise builds for a minute in silence). The build's seconds are left in
            ``engine.build_seconds`` (0 when nothing was built).

    Raises:
        CheckpointError: checkpoint missing or unreadable. ValueError: bad name or size.
        EngineMismatchError: the engine on disk was built from another checkpoint / GPU, or changed since.
        EngineNotBuiltError: missing and ``build`` is False. BackendUnavailableError: library or hardware missing.
    """
    from pipeline.runtime.build import CheckpointRef, open_engines

    backend = resolve_backend(backend, device)
    device = (device or ("cuda" if backend == "tensorrt" else "cpu")).lower()
    if backend == "tensorrt" and not device.startswith("cuda"):
        raise ValueError(f"the tensorrt backend runs on a CUDA device, not {device}")
    if backend == "openvino" and device != "cpu":
        raise ValueError(f"the openvino backend runs on the CPU here, not {device}")
    status = probe_backend(backend)
    if not status.available:
        raise BackendUnavailableError(f"backend {backend} is not usable here: {status.reason}")
    precision = resolve_precision(backend, precision, device)
    ckpt = CheckpointRef.load(checkpoint)
    ckpt.check_size(size)
    cfg = ckpt.config

    if backend == "torch":
        from pipeline.model.checkpoint import load_model

        return TorchEngine(load_model(ckpt.path), size, ckpt.sha256, device, precision)
    if engines_dir is None:
        raise ValueError(f"the {backend} backend needs an engines_dir")

    def make(entries: dict) -> Engine:
        folder = Path(engines_dir)
        files = tuple((folder / entries[p].file) for p in ("embed", "reveal"))
        hashes = tuple((entries[p].file, entries[p].sha256) for p in ("embed", "reveal"))
        info = EngineInfo(backend, precision, size, cfg.channels, cfg.num_secrets, ckpt.sha256, device, hashes)
        if backend == "onnxruntime":
            from pipeline.runtime.onnxruntime_engine import OnnxRuntimeEngine

            return OnnxRuntimeEngine(*files, info, threads)
        if backend == "openvino":
            from pipeline.runtime.openvino_engine import OpenVINOEngine

            return OpenVINOEngine(*files, info, threads)
        from pipeline.runtime.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(*files, info, max_batch=int(entries["embed"].batch_max))

    fmt = ENGINE_FORMAT[backend]
    to_build = engines_to_build(fmt, precision, ckpt, size, engines_dir) if build else []
    say = notify or log.info
    if to_build:
        where = "minutes on the GPU" if fmt == "tensorrt" else "about a minute on a small CPU"
        say(
            f"building {BUILD_LABEL[fmt]} {precision} engines for {ckpt.path} at {size}x{size} into "
            f"{os.path.join(engines_dir, '')} (once; {where})..."
        )
    t0 = time.perf_counter()
    engine = open_engines(fmt, precision, ckpt, size, Path(engines_dir), build, make, device)
    if to_build:
        engine.build_seconds = time.perf_counter() - t0
        say(f"engines built in {engine.build_seconds:.0f} s")
    if cfg.codes.deblur.enabled or cfg.codes.register.enabled or cfg.coded:
        torch_stages(ckpt.path, engine)
    log.info("engine ready: %s %s at %dx%d on %s (%s)", backend, precision, size, size, device, os.fspath(engines_dir))
    return engine


__all__ = [
    "BackendUnavailableError",
    "EmbedModule",
    "Engine",
    "EngineError",
    "EngineInfo",
    "EngineMismatchError",
    "EngineNotBuiltError",
    "RevealModule",
    "TorchEngine",
    "load_engine",
    "resolve_backend",
]
