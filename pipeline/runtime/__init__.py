"""Runtime backends: one ``Engine`` class (see ``base.py``) implemented by torch, ONNX Runtime, OpenVINO and
TensorRT, each built complete by its constructor (graphs, the model's analytic stages, threshold). ``load_engine`` is
the one entry point the jobs use; ``build_engines`` (``python build_engines.py``) compiles the engines ahead of time.

Backend libraries are imported only when their backend is used (OpenVINO and torch-tensorrt take seconds to
import, and torch-tensorrt raises a bare ``Exception`` on a machine without the NVIDIA libraries).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.model.digital.keys import Key
from pipeline.runtime.engine import Engine, EngineInfo
from pipeline.runtime.errors import BackendUnavailableError, EngineError, EngineMismatchError, EngineNotBuiltError
from pipeline.runtime.manifest import check_layout, model_folder
from pipeline.runtime.probe import BACKENDS, int8_units, normalize_precision, probe_backend
from pipeline.runtime.quality import int8_holds

if TYPE_CHECKING:
    import torch

    from pipeline.runtime.base import EmbedModule, RevealModule, TorchEngine
    from pipeline.runtime.build import CheckpointRef

# Names of the torch modules, imported when first asked for (``pipeline.runtime.TorchEngine``): a job whose network
# writes nothing (``DigitalEngine``) never imports torch.
_LAZY = {
    "EmbedModule": "pipeline.runtime.base",
    "RevealModule": "pipeline.runtime.base",
    "TorchEngine": "pipeline.runtime.base",
    "AnalyticStages": "pipeline.runtime.stages",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def resolve_precision(backend: str, precision: str | None, device: str, model_sha256: str | None = None) -> str:
    """The precision a backend runs (its default when None); refuses one it cannot run on this machine.

    OpenVINO's default: int8 where the CPU has int8 units and the model's int8 figures hold (``int8_holds``: no
    ``validate`` figure more than 0.2 dB under the fp32 model's, as measured and recorded in ``int8.json``), else bf16
    where the CPU runs it, else fp32."""
    if backend == "torch":
        p = normalize_precision(precision or "fp32")
        allowed = ("fp32", "fp16") if device.startswith("cuda") else ("fp32",)
    elif backend == "onnxruntime":
        p, allowed = normalize_precision(precision or "fp32"), ("fp32",)
    elif backend == "openvino":
        allowed = probe_backend("openvino").precisions
        p = normalize_precision(precision) if precision else openvino_default(allowed, model_sha256)
    else:  # tensorrt
        p, allowed = normalize_precision(precision or "fp16"), ("fp16", "fp32")
    if p not in allowed:
        why = probe_backend(backend).reason
        raise BackendUnavailableError(
            f"the {backend} backend cannot run {p} on {device} here; it can run: {', '.join(allowed) or 'nothing'}"
            + (f" ({why})" if why else "")
        )
    return p


def openvino_default(allowed: tuple[str, ...], model_sha256: str | None) -> str:
    """OpenVINO's default precision among ``allowed`` for the model with this checkpoint sha256 (see
    ``resolve_precision``)."""
    if "int8" in allowed and model_sha256 and int8_units() and int8_holds(model_sha256):
        return "int8"
    return "bf16" if "bf16" in allowed else "fp32"


def engines_to_build(
    fmt: str, precision: str, ckpt: CheckpointRef, size: int, engines_dir: str | os.PathLike[str]
) -> list[str]:
    """Keys of the engines that loading would build now: absent from the model's folder of ``engines_dir`` (or its
    manifest).

    A cheap look before the locked check that ``open_engines`` does; a problem it cannot judge (an unreadable
    manifest, an engine of another checkpoint) counts as nothing to build: ``open_engines`` reports it.
    """
    from pipeline.runtime.build import entry_problem
    from pipeline.runtime.manifest import PARTS, engine_key, model_folder, read_manifest

    folder = model_folder(engines_dir, ckpt.sha256)
    try:
        entries = read_manifest(folder)
    except EngineError:
        return []
    keys = [engine_key(fmt, precision, size, part) for part in PARTS]
    return [k for k in keys if k not in entries or entry_problem(entries[k], folder, ckpt)[0] == "missing"]


def load_engine(
    backend: str = "auto",
    checkpoint: str | os.PathLike[str] | torch.nn.Module | None = None,
    size: int = 256,
    device: str | None = None,
    precision: str | None = None,
    engines_dir: str | None = "engines",
    *,
    build: bool = True,
    threads: int | None = None,
    notify: Callable[[str], None] | None = None,
    key: Key | None = None,
    streams: int | None = None,
) -> Engine:
    """Load the embed + reveal engine of a model at image size ``size``, with the model's analytic stages.

    Args:
        checkpoint: the model, loaded by ``pipeline.model.load_model`` (a job loads it once and hands it down: it is
            not read again here), or what ``load_model`` takes (None = the shipped default, a shipped model's name,
            a checkpoint file), loaded here.
        backend: auto, torch, onnxruntime, openvino or tensorrt (``resolve_backend`` says what auto picks).
        device: cpu (default for CPU backends) or cuda[:i] (TensorRT's default; torch and onnxruntime-gpu too).
        precision: fp32, bf16, fp16 or int8 (OpenVINO); None = the backend's default (``resolve_precision``;
            OpenVINO: bf16 where the CPU runs it, else fp32; TensorRT: fp16; others fp32). A precision the machine
            cannot run is refused, never replaced.
        engines_dir: the engines folder (not used by torch): each model's engines live in its own subfolder
            (``manifest.model_folder``), so models take turns in one folder with no rebuild.
        build: build a missing engine now (logged), or refuse with the command that builds it.
        threads: CPU threads for ONNX Runtime / OpenVINO (default: every core this process may use).
        streams: OpenVINO's parallel infer requests (default: chosen from ``threads``, ``default_streams``).
        notify: called with a line before a missing engine is built and with another when it is done (the CLI
            prints them: a first run otherwise builds for a minute in silence). The engine's ``build_seconds``
            says how long the build took (0 when nothing was built).
        key: the digital layer's key (a model with one; ``pipeline.model.digital.keys.resolve_key``: the
            ``SRIS_KEY`` environment variable's key, else the public key, when None).

    Raises:
        CheckpointError: checkpoint missing or unreadable. ValueError: bad name or size.
        EngineMismatchError: the engine on disk was built from another checkpoint / GPU, or changed since.
        EngineNotBuiltError: missing and ``build`` is False. BackendUnavailableError: library or hardware missing.
        EngineError: an engines folder of the older one-model layout.
    """
    import torch

    from pipeline.model.checkpoint import load_model
    from pipeline.runtime.base import TorchEngine
    from pipeline.runtime.build import CheckpointRef, open_engines
    from pipeline.runtime.stages import AnalyticStages

    backend = resolve_backend(backend, device)
    device = (device or ("cuda" if backend == "tensorrt" else "cpu")).lower()
    if backend == "tensorrt" and not device.startswith("cuda"):
        raise ValueError(f"the tensorrt backend runs on a CUDA device, not {device}")
    if backend == "openvino" and device != "cpu":
        raise ValueError(f"the openvino backend runs on the CPU here, not {device}")
    status = probe_backend(backend)
    if not status.available:
        raise BackendUnavailableError(f"backend {backend} is not usable here: {status.reason}")
    model = checkpoint if isinstance(checkpoint, torch.nn.Module) else load_model(checkpoint)
    ckpt = CheckpointRef.of(model)
    precision = resolve_precision(backend, precision, device, ckpt.sha256)
    ckpt.check_size(size)
    cfg = ckpt.config

    if backend == "torch":
        return TorchEngine(model, size, device, precision, key)
    if engines_dir is None:
        raise ValueError(f"the {backend} backend needs an engines_dir")
    # Registration, deblur, detection and the digital layer: beside the graphs.
    stages = AnalyticStages(model, key=key) if cfg.coded or cfg.digital.enabled else None

    def make(entries: dict, build_seconds: float) -> Engine:
        folder = model_folder(engines_dir, ckpt.sha256)
        files = tuple((folder / entries[p].file) for p in ("embed", "reveal"))
        hashes = tuple((entries[p].file, entries[p].sha256) for p in ("embed", "reveal"))
        info = EngineInfo(
            backend, precision, size, cfg.channels, cfg.num_secrets, ckpt.sha256, device, hashes, model.model_name
        )
        if backend == "onnxruntime":
            from pipeline.runtime.onnxruntime_engine import OnnxRuntimeEngine

            return OnnxRuntimeEngine(*files, info, stages, threads, build_seconds)
        if backend == "openvino":
            from pipeline.runtime.openvino_engine import OpenVINOEngine

            return OpenVINOEngine(*files, info, stages, threads, build_seconds, streams)
        from pipeline.runtime.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(*files, info, int(entries["embed"].batch_max), stages, build_seconds)

    fmt = ENGINE_FORMAT[backend]
    check_layout(engines_dir)
    to_build = engines_to_build(fmt, precision, ckpt, size, engines_dir) if build else []
    say = notify or log.info
    if to_build:
        where = "minutes on the GPU" if fmt == "tensorrt" else "about a minute on a small CPU"
        say(
            f"building {BUILD_LABEL[fmt]} {precision} engines for {ckpt.path} at {size}x{size} into "
            f"{os.path.join(model_folder(engines_dir, ckpt.sha256), '')} (once; {where})..."
        )
    engine = open_engines(fmt, precision, model, size, Path(engines_dir), build, make, device)
    if to_build:
        say(f"engines built in {engine.build_seconds:.0f} s")
    log.info("engine ready: %s %s at %dx%d on %s (%s)", backend, precision, size, size, device, os.fspath(engines_dir))
    return engine


__all__ = [
    "AnalyticStages",
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
