"""OpenVINO backend: the two IR graphs compiled for the CPU with an explicit inference precision.

Each graph is compiled once, in the constructor (both at the same time, in two threads), for a static batch of
``request_batch`` images with the THROUGHPUT hint and ``streams`` streams: the CPU plugin picks faster kernels for
static shapes than for the IR's dynamic batch (and fuses the element-wise chains into one kernel). A call splits its
batch into requests of that size that an ``AsyncInferQueue`` keeps in flight, one per stream, so every core works;
a last request that the batch does not fill is padded with copies of its last image (their outputs are dropped).
The figures behind these choices are in ``engines/README.md``.

Precisions: fp32, bf16 and fp16 are the IR's inference precision hint. An int8 engine is an IR whose learned
convolutions NNCF quantized (``quantize.py``); the rest of its graph runs in fp32.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.runtime.base import EngineInfo
from pipeline.runtime.common import CompiledEngine
from pipeline.runtime.errors import BackendUnavailableError, EngineError
from pipeline.runtime.export import OPENVINO_PRECISION
from pipeline.runtime.probe import cpu_count, openvino_cpu_precisions
from pipeline.runtime.stages import AnalyticStages

log = logging.getLogger(__name__)

REQUEST_BATCH = 1  # images per infer request: on the 2-core CPU batch 1 and 4 are within noise, and 1 never pads


def default_streams(threads: int) -> int:
    """Streams for ``threads`` CPU threads: one per thread (each image's graph on one core) up to 4; wider machines
    give each stream 2-4 threads (OpenVINO's own THROUGHPUT choice is alike)."""
    return threads if threads <= 4 else max(4, threads // 4)


class OpenVINOEngine(CompiledEngine):
    """Embed and reveal OpenVINO IR run on the CPU in ``info.precision`` (fp32, bf16/fp16 where the CPU has it, int8).

    ``threads``: CPU threads for inference (default: every core this process may use); ``streams``: requests run at
    once (default ``default_streams(threads)``); ``request_batch``: images per request.
    """

    def __init__(
        self,
        embed_xml: Path,
        reveal_xml: Path,
        info: EngineInfo,
        stages: AnalyticStages | None = None,
        threads: int | None = None,
        build_seconds: float = 0.0,
        streams: int | None = None,
        request_batch: int = REQUEST_BATCH,
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError(f"openvino is not installed ({exc}): pip install openvino") from exc
        runnable = openvino_cpu_precisions()
        if info.precision not in runnable:
            raise BackendUnavailableError(
                f"this CPU cannot run OpenVINO in {info.precision} (it can: {', '.join(runnable)}); OpenVINO would "
                f"silently run fp32 instead. Use --precision fp32"
            )
        super().__init__(info, stages, build_seconds)
        self.threads = threads or cpu_count()
        self.streams = max(1, min(streams or default_streams(self.threads), self.threads))
        self.request_batch = max(1, request_batch)
        self._ov = ov
        core = ov.Core()
        files = {"embed": embed_xml, "reveal": reveal_xml}
        with ThreadPoolExecutor(2, thread_name_prefix="ov-compile") as pool:  # compiling releases the GIL
            futures = {part: pool.submit(self._compile, core, part, path) for part, path in files.items()}
            self._compiled = {part: f.result() for part, f in futures.items()}
        self._queues = {}
        for part, compiled in self._compiled.items():
            queue = ov.AsyncInferQueue(compiled, self.streams)
            queue.set_callback(_store_output)
            self._queues[part] = queue
        # A queue serves one call at a time per graph (embed and reveal may run side by side).
        self._locks = {"embed": threading.Lock(), "reveal": threading.Lock()}

    @property
    def hint(self) -> str:
        """The inference precision hint: the precision itself, fp32 around an int8 graph's quantized layers."""
        return OPENVINO_PRECISION[self.info.precision]

    def _compile(self, core: Any, part: str, xml: Path) -> Any:
        try:
            model = core.read_model(str(xml))
        except RuntimeError as exc:
            raise EngineError(f"OpenVINO cannot read the engine {xml}: {exc}") from exc
        model.reshape({i.get_any_name(): [self.request_batch, *_item_shape(i)] for i in model.inputs})
        config = {
            "INFERENCE_PRECISION_HINT": self.hint,
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": self.threads,
        }
        compiled = core.compile_model(model, "CPU", config)
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != self.hint:  # never run another precision than the one reported
            raise EngineError(f"OpenVINO compiled {part} in {got}, not {self.info.precision} as asked")
        log.debug("openvino %s compiled: %s, %d threads, %d streams, batch %d", part, got, self.threads,
                  self.streams, self.request_batch)  # fmt: skip
        return compiled

    def _run(self, part: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        batch = len(next(iter(inputs.values())))
        step = self.request_batch
        with self._locks[part]:
            queue = self._queues[part]
            results: list[np.ndarray | None] = [None] * -(-batch // step)
            for j, i in enumerate(range(0, batch, step)):
                queue.start_async({n: _padded(a[i : i + step], step) for n, a in inputs.items()}, (results, j))
            queue.wait_all()
        out = np.concatenate(results) if len(results) > 1 else results[0]
        return out[:batch]


def _item_shape(port: Any) -> list[int]:
    """An input's shape without its (dynamic) batch: (C, N, N)."""
    return [d.get_length() for d in list(port.get_partial_shape())[1:]]


def _padded(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` (b, ...) with its last item repeated up to n items: a static request's shape."""
    if len(a) == n:
        return a
    return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])


def _store_output(request: Any, userdata: tuple[list, int]) -> None:
    results, i = userdata
    results[i] = request.get_output_tensor(0).data.copy()  # the request's buffer is reused by its next inference
