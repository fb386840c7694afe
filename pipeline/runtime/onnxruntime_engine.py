"""ONNX Runtime backend: the two ONNX graphs in InferenceSessions (CPU, or CUDA with onnxruntime-gpu)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.runtime.base import EngineInfo
from pipeline.runtime.common import CompiledEngine
from pipeline.runtime.errors import BackendUnavailableError, EngineError
from pipeline.runtime.probe import cpu_count
from pipeline.runtime.stages import AnalyticStages

log = logging.getLogger(__name__)


def session_options(threads: int | None):
    """CPU options: one intra-op pool as wide as the usable cores, sequential graph, all graph optimizations.

    Inter-op parallelism is off: the graphs are a chain of convolutions, and a second pool would only compete with
    the intra-op one (and with the job's decode threads) for the same cores.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_count()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    return so


class OnnxRuntimeEngine(CompiledEngine):
    """Embed and reveal ONNX graphs run by ONNX Runtime (fp32)."""

    def __init__(
        self,
        embed_path: Path,
        reveal_path: Path,
        info: EngineInfo,
        stages: AnalyticStages | None = None,
        threads: int | None = None,
        build_seconds: float = 0.0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(f"onnxruntime is not installed ({exc}): pip install onnxruntime") from exc
        if info.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError(
                    "onnxruntime has no CUDA provider here: install onnxruntime-gpu, or use --device cpu"
                )
            index = int(info.device.partition(":")[2] or 0)
            providers: list = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        super().__init__(info, stages, build_seconds)
        self.threads = threads or cpu_count()
        opts = session_options(self.threads)
        try:
            self.sessions = {
                p: ort.InferenceSession(str(f), opts, providers=providers)
                for p, f in (("embed", embed_path), ("reveal", reveal_path))
            }
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"ONNX Runtime cannot load the engines ({embed_path}, {reveal_path}): {exc}") from exc
        log.debug("onnxruntime sessions ready (%d threads, providers %s)", self.threads, providers)

    def _run(self, part: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        # InferenceSession.run is thread-safe, so concurrent callers need no lock here.
        return self.sessions[part].run(None, inputs)[0]
