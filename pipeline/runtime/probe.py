"""What this machine can run: CPU description, library versions, and per backend whether it works here and why not.

Everything is probed lazily and cached: importing OpenVINO or torch-tensorrt costs seconds, and the TensorRT import
raises a bare ``Exception`` (not ``ImportError``) when the NVIDIA libraries or the driver are missing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.versions import library_versions as installed_versions

BACKENDS = ("tensorrt", "openvino", "onnxruntime", "torch")
"""Runtime backends, in the order ``auto`` prefers them."""


_ALIASES = {
    "fp32": "fp32",
    "f32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "f16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "int8": "int8",
    "i8": "int8",
}

# Distributions whose versions an engine depends on (read from package metadata: nothing is imported).
_LIBRARIES = (
    "torch",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "torch-tensorrt",
    "tensorrt",
    "tensorrt-cu12",
    "tensorrt-cu13",
)

_CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_fp16",
    "amx_int8",
)
# Instructions that make int8 convolutions faster than float ones (VNNI dot products, AMX tiles); OpenVINO runs int8
# without them too, by emulation, with no gain.
INT8_UNITS = ("amx_int8", "avx512_vnni", "avx_vnni")


def normalize_precision(precision: str) -> str:
    """``"f32"``, ``"float32"`` ... -> ``"fp32"``; raises ``ValueError`` for an unknown name."""
    try:
        return _ALIASES[precision.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}: choose fp32, bf16, fp16 or int8") from None


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask, which containers and taskset restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.cache
def cpu_description() -> dict[str, Any]:
    """Model name, usable cores and the instruction-set flags that decide bf16/fp16 speed on CPU."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: the platform module knows less, but something
        pass
    model = model or platform.processor() or platform.machine()
    mem_gib = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # sysconf names are POSIX-only
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "model": model,
        "cores": cpu_count(),
        "memory_gib": mem_gib,
        "flags": [f for f in _CPU_FLAGS if f in flags],
        "machine": platform.machine(),
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries engines depend on (absent ones left out)."""
    return installed_versions(_LIBRARIES)


@dataclass(frozen=True)
class BackendStatus:
    """Whether ``name`` runs on this machine; ``precisions`` it can run here, or ``reason`` it cannot."""

    name: str
    available: bool
    version: str = ""
    device: str = "cpu"
    precisions: tuple[str, ...] = ()
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@functools.cache
def openvino_cpu_precisions() -> tuple[str, ...]:
    """Inference precisions OpenVINO's CPU plugin can really run here (it silently runs f32 for the others)."""
    import openvino as ov

    caps = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return ("fp32", *(p for p, cap in (("bf16", "BF16"), ("fp16", "FP16"), ("int8", "INT8")) if cap in caps))


def int8_units() -> bool:
    """The CPU has int8 dot-product units (``INT8_UNITS``): where an int8 engine can be the faster one."""
    return any(f in cpu_description()["flags"] for f in INT8_UNITS)


def import_torch_tensorrt() -> Any:
    """Import torch-tensorrt, turning every failure (it raises a bare Exception without libnvinfer) into one type."""
    from pipeline.runtime.errors import BackendUnavailableError

    try:
        import torch_tensorrt
    except Exception as exc:  # ImportError, or a bare Exception("... Could not find libnvinfer.so ...")
        raise BackendUnavailableError(f"torch_tensorrt cannot be imported: {exc}") from exc
    return torch_tensorrt


def gpu_description(device: str = "cuda") -> dict[str, Any]:
    """Name and architecture (``sm_90``) of a CUDA device; engines compiled by TensorRT are tied to the arch."""
    import torch

    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "arch": f"sm_{major}{minor}", "cuda": torch.version.cuda}


def _probe_torch() -> BackendStatus:
    import torch

    cuda = torch.cuda.is_available()
    precisions = ("fp32", "fp16") if cuda else ("fp32",)
    return BackendStatus("torch", True, torch.__version__, "cuda" if cuda else "cpu", precisions)


def _probe_onnxruntime() -> BackendStatus:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return BackendStatus("onnxruntime", False, reason=f"onnxruntime is not installed ({exc})")
    providers = ort.get_available_providers()
    device = "cuda" if "CUDAExecutionProvider" in providers else "cpu"
    return BackendStatus("onnxruntime", True, ort.__version__, device, ("fp32",), details={"providers": providers})


def _probe_openvino() -> BackendStatus:
    try:
        import openvino as ov
    except ImportError as exc:
        return BackendStatus("openvino", False, reason=f"openvino is not installed ({exc})")
    try:
        precisions = openvino_cpu_precisions()
    except RuntimeError as exc:
        return BackendStatus("openvino", False, ov.__version__, reason=f"OpenVINO has no usable CPU device: {exc}")
    note = "" if "bf16" in precisions else "this CPU has no bf16 (AVX512_BF16/AMX): OpenVINO runs fp32 here"
    version = ov.__version__.split("-")[0]  # "2026.4.1-22982-e213a14..." -> "2026.4.1"
    return BackendStatus("openvino", True, version, "cpu", precisions, note)


def _probe_tensorrt() -> BackendStatus:
    import torch

    if not torch.cuda.is_available():
        why = "torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
        return BackendStatus("tensorrt", False, device="cuda", reason=f"no CUDA GPU ({why})")
    try:
        trt = import_torch_tensorrt()
    except Exception as exc:
        return BackendStatus("tensorrt", False, device="cuda", reason=str(exc))
    gpu = gpu_description()
    return BackendStatus("tensorrt", True, trt.__version__, "cuda", ("fp16", "fp32"), details={"gpu": gpu})


_PROBES = {
    "torch": _probe_torch,
    "onnxruntime": _probe_onnxruntime,
    "openvino": _probe_openvino,
    "tensorrt": _probe_tensorrt,
}


@functools.cache
def probe_backend(name: str) -> BackendStatus:
    """Status of one backend (cached for the life of the process)."""
    if name not in _PROBES:
        raise ValueError(f"unknown backend {name!r}: choose auto, {', '.join(BACKENDS)}")
    return _PROBES[name]()


def probe_backends() -> dict[str, BackendStatus]:
    """Status of every backend, in ``auto``'s order of preference."""
    return {name: probe_backend(name) for name in BACKENDS}
