"""Turn the two paths of a model (``EmbedModule``, ``RevealModule``) into engine files.

Every engine has a static image size N and a dynamic batch:

    embed:  cover (B, C, N, N), secrets (B, K*C, N, N) -> stego (B, C, N, N)
    reveal: stego (B, C, N, N) -> secrets (B, K*C, N, N)

ONNX goes through ``torch.export`` and the dynamo ONNX exporter (opset 18). The TorchScript exporter cannot export
this model: the depthwise pyramid and high-pass kernels are expanded to the traced channel count, and after an
edge-mode Pad it loses their shape ("convolution for kernel of unknown shape"). OpenVINO IR is converted from the
ONNX file; TensorRT goes through torch-tensorrt's dynamo path on the GPU.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.runtime.base import EmbedModule, RevealModule
from pipeline.runtime.errors import EngineError
from pipeline.runtime.manifest import PART_IO

ONNX_OPSET = 18  # the dynamo exporter's own opset: asking for 17 makes it run a version converter that fails on Pad
VERIFY_BATCH = 2  # batch of the random inputs that every built engine is checked on against torch
# The inference precision hint of each engine precision; an int8 engine's layers that are not quantized run in fp32.
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def part_module(model: torch.nn.Module, part: str) -> torch.nn.Module:
    if part == "embed":
        return EmbedModule(model).eval()
    if part == "reveal":
        return RevealModule(model).eval()
    raise ValueError(f"unknown part {part!r}: embed or reveal")


def io_shapes(channels: int, num_secrets: int, size: int, part: str) -> tuple[dict[str, list], dict[str, list]]:
    """Input and output shapes of ``part`` with the batch as None: ``({"cover": [None, 3, N, N], ...}, {...})``."""
    shape = {"cover": channels, "stego": channels, "secrets": channels * num_secrets}
    ins, outs = PART_IO[part]
    return ({n: [None, shape[n], size, size] for n in ins}, {n: [None, shape[n], size, size] for n in outs})


def example_inputs(
    shapes: dict[str, list],
    batch: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, ...]:
    """Random inputs in [0, 1] of the given shapes (batch filled in), in input order."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand((batch, *s[1:]), generator=gen).to(device, dtype) for s in shapes.values())


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's harmless noise (missing torchvision ops, dim renaming) but keep real errors."""
    names = (
        "torch.onnx._internal.exporter._registration",
        "torch.onnx._internal.exporter._core",
        "torch.onnx._internal.exporter._onnx_program",
        "onnxscript",
        "onnx_ir",
    )
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)  # the optimizer logs every rewrite at INFO
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: torch.nn.Module, part: str, size: int, path: Path) -> dict[str, Any]:
    """Export ``part`` of ``model`` (fp32, CPU) to ONNX at ``path`` with a dynamic batch; returns the I/O shapes."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; say so before torch fails deep inside)
    except ImportError as exc:
        raise EngineError("exporting ONNX needs onnxscript: pip install onnxscript") from exc
    cfg = model.config
    ins, outs = io_shapes(cfg.channels, cfg.num_secrets, size, part)
    module = part_module(model, part).float().cpu()
    # Example batch 2, not 1: torch.export specializes a dimension whose example value is 1.
    args = example_inputs(ins, VERIFY_BATCH)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter(), torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes={n: {0: batch} for n in ins})
        onnx_program = torch.onnx.export(
            program,
            args,
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=list(ins),
            output_names=list(outs),
            optimize=True,
            verbose=False,
        )
        onnx_program.save(path, external_data=False)
    return {"inputs": ins, "outputs": outs}


def convert_openvino(onnx_path: Path, precision: str, xml_path: Path) -> None:
    """ONNX -> OpenVINO IR (``xml_path`` + the ``.bin`` beside it) with fp32 weights and ``precision`` recorded.

    Weights stay fp32 in the file (``compress_to_fp16=False``): the precision is an execution property. It is
    written into the IR's ``runtime_options`` so that the plain OpenVINO API uses it too, and the runtime passes it
    explicitly again (OpenVINO's CPU default is bf16 where the CPU has it, which this project never relies on).
    """
    import openvino as ov

    ov_model = ov.convert_model(str(onnx_path))
    ov_model.set_rt_info(OPENVINO_PRECISION[precision], ["runtime_options", "INFERENCE_PRECISION_HINT"])
    ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)


def compile_tensorrt(
    model: torch.nn.Module,
    part: str,
    size: int,
    precision: str,
    path: Path,
    device: str,
    batch_range: tuple[int, int, int],
) -> dict[str, Any]:
    """Compile ``part`` with torch-tensorrt (dynamo path) and save it as an ExportedProgram at ``path``.

    FP16 is explicit typing: module and inputs are cast to fp16 and TensorRT keeps the types it is given (the
    older ``enabled_precisions`` is deprecated). The batch is dynamic within
    ``batch_range`` = (min, opt, max) through ``torch_tensorrt.Input(min_shape, opt_shape, max_shape)``, with one
    ``torch.export.Dim`` shared by all inputs so that cover and secrets keep the same batch.
    """
    from pipeline.runtime.probe import import_torch_tensorrt

    torch_tensorrt = import_torch_tensorrt()
    lo, opt, hi = batch_range
    dtype = torch.float16 if precision == "fp16" else torch.float32
    cfg = model.config
    ins, outs = io_shapes(cfg.channels, cfg.num_secrets, size, part)
    module = part_module(model, part).to(device, dtype)
    args = example_inputs(ins, opt, device=device, dtype=dtype)
    batch = torch.export.Dim("batch", min=lo, max=hi)
    dynamic_shapes = {n: {0: batch} for n in ins}
    trt_inputs = [
        torch_tensorrt.Input(
            min_shape=(lo, *s[1:]), opt_shape=(opt, *s[1:]), max_shape=(hi, *s[1:]), dtype=dtype, name=n
        )
        for n, s in ins.items()
    ]
    with torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
        # No precision flag: explicit typing is the default (and, in the newest releases, the only mode), so the
        # fp16 module and inputs are what makes the engine fp16.
        trt_module = torch_tensorrt.dynamo.compile(
            program, arg_inputs=trt_inputs, min_block_size=1, device=torch.device(device)
        )
        torch_tensorrt.save(
            trt_module,
            str(path),
            output_format="exported_program",
            arg_inputs=list(args),
            dynamic_shapes=dynamic_shapes,
            retrace=True,
        )
    return {"inputs": ins, "outputs": outs}


def reference_outputs(model: torch.nn.Module, part: str, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """What torch (fp32, CPU) gives for ``inputs``: the ground truth every engine is checked against."""
    module = part_module(model, part).float().cpu()
    with torch.inference_mode():
        return module(*(t.float().cpu() for t in inputs)).numpy()
