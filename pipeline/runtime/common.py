"""Input checks and batching shared by the compiled backends (ONNX Runtime, OpenVINO, TensorRT)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.runtime.base import Engine, EngineInfo
from pipeline.runtime.stages import AnalyticStages


def check_images(name: str, x: object, channels: int, size: int) -> np.ndarray:
    """``x`` as a C-contiguous float32 (B, channels, size, size) array, or a ``ValueError`` that says what is wrong."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    want = (channels, size, size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (B, {channels}, {size}, {size}) with B >= 1 (float32 in [0, 1]), "
            f"got {tuple(x.shape)}"
        )
    if not np.issubdtype(x.dtype, np.floating):  # uint8 0-255 images would run and give garbage
        raise ValueError(f"{name} must be float images in [0, 1], got dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


class CompiledEngine(Engine):
    """Base of the engines that run two compiled graphs: validates inputs, runs the model's analytic stages (torch,
    CPU, fp32) before the reveal graph, splits batches above ``max_batch``.

    Subclasses build their graphs in their constructor, call this one's with the rest, and implement ``_run(part,
    inputs)`` for one chunk: ``inputs`` maps the graph input names to (b, C', N, N) float32 arrays and the result is
    the single output, (b, C'', N, N) float32.
    """

    def __init__(
        self,
        info: EngineInfo,
        stages: AnalyticStages | None = None,
        build_seconds: float = 0.0,
        max_batch: int | None = None,
    ) -> None:
        super().__init__(info, stages, build_seconds)
        self.max_batch = max_batch

    def _run(self, part: str, inputs: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, cover: np.ndarray, secrets: np.ndarray) -> np.ndarray:
        i = self.info
        cover = check_images("cover", cover, i.channels, i.size)
        secrets = check_images("secrets", secrets, i.channels * i.num_secrets, i.size)
        if len(cover) != len(secrets):
            raise ValueError(f"cover and secrets must have the same batch, got {len(cover)} and {len(secrets)}")
        return self._chunked(lambda s: self._run("embed", {"cover": cover[s], "secrets": secrets[s]}), len(cover))

    def _reveal_graph(self, stego: np.ndarray) -> np.ndarray:
        return self._chunked(lambda s: self._run("reveal", {"stego": stego[s]}), len(stego))

    def reveal(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        stego = check_images("stego", stego, self.info.channels, self.info.size)
        return self._reveal_graph(self.restore(stego, aligned))

    def reveal_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        stego = check_images("stego", stego, self.info.channels, self.info.size)
        restored, scores = self.restore_and_detect(stego)
        return self._reveal_graph(restored), scores

    def _chunked(self, run: Callable[[slice], np.ndarray], batch: int) -> np.ndarray:
        step = self.max_batch or batch
        if batch <= step:
            return run(slice(0, batch))
        return np.concatenate([run(slice(i, i + step)) for i in range(0, batch, step)])
