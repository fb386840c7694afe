"""TensorRT backend: the engines compiled by torch-tensorrt (dynamo path), loaded as ExportedPrograms on a GPU.

An engine runs batches within the range it was compiled for; larger batches are split (``CompiledEngine``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.runtime.base import EngineInfo
from pipeline.runtime.common import CompiledEngine
from pipeline.runtime.errors import BackendUnavailableError, EngineError
from pipeline.runtime.probe import import_torch_tensorrt
from pipeline.runtime.stages import AnalyticStages

log = logging.getLogger(__name__)


class TensorRTEngine(CompiledEngine):
    """Embed and reveal TensorRT engines on ``info.device`` (fp16 by default)."""

    def __init__(
        self,
        embed_path: Path,
        reveal_path: Path,
        info: EngineInfo,
        max_batch: int,
        stages: AnalyticStages | None = None,
        build_seconds: float = 0.0,
    ) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailableError("the tensorrt backend needs a CUDA GPU, and torch sees none")
        torch_tensorrt = import_torch_tensorrt()
        super().__init__(info, stages, build_seconds, max_batch)
        self.device = torch.device(info.device)
        self.dtype = torch.float16 if info.precision == "fp16" else torch.float32
        try:
            with torch.cuda.device(self.device):
                self.modules = {
                    p: torch_tensorrt.load(str(f)).module() for p, f in (("embed", embed_path), ("reveal", reveal_path))
                }
        except Exception as exc:  # torch.export / TensorRT deserialization errors have many types
            raise EngineError(f"cannot load the TensorRT engines ({embed_path}, {reveal_path}): {exc}") from exc

    def _run(self, part: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            args = [torch.from_numpy(a).to(self.device, self.dtype, non_blocking=True) for a in inputs.values()]
            out = self.modules[part](*args)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out.float().cpu().numpy()
