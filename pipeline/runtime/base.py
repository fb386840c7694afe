"""The engine interface every backend implements, and the reference PyTorch backend.

An engine runs the two compiled paths of a model at one static image size N with a dynamic batch:

    embed(cover, secrets) -> stego     cover (B, C, N, N), secrets (B, K*C, N, N), float32 numpy in [0, 1]
    reveal(stego) -> secrets           stego (B, C, N, N) -> (B, K*C, N, N), float32 numpy in [0, 1]
    detect(stego) -> scores            stego (B, C, N, N) -> (B,) float32 mark scores, or None (no mark to read)

Detection (``HidingModel.detect``) is analytic and runs in torch beside every backend; ``detect_threshold`` is the
score from which an image counts as marked (the checkpoint's calibrated value).

Outputs are clamped to [0, 1] (not rounded: rounding to 8 bits happens where images are written). Engines take and
return numpy arrays so that the job code does not care which library runs the network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class EngineInfo:
    """What runs: backend, precision, image size N, model shape and checkpoint hash; ``engine_files`` holds the
    (file name, sha256) of the compiled engines (empty for torch), for job manifests."""

    backend: str
    precision: str
    size: int
    channels: int
    num_secrets: int
    model_sha256: str
    device: str = "cpu"
    engine_files: tuple[tuple[str, str], ...] = ()


class Engine(ABC):
    """A loaded embed + reveal pair. Subclasses set ``info``."""

    info: EngineInfo
    # Seconds ``load_engine`` spent building missing engines for this one (0: they were built already).
    build_seconds: float = 0.0
    # The model's detection (stego, threshold) -> scores and its calibrated threshold; None without a mark to read.
    detector: Callable[[np.ndarray, float | None], np.ndarray] | None = None
    detect_threshold: float | None = None

    @abstractmethod
    def embed(self, cover: np.ndarray, secrets: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def reveal(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        """``aligned``: the stego sits where it was embedded (the embed job's verify), so a model with registration
        skips its search (``HidingModel.restore``); the result is the same for such a stego."""

    def detect(self, stego: np.ndarray) -> np.ndarray | None:
        """(B, C, N, N) float32 in [0, 1] -> (B,) float32 mark scores; None when the model has no mark to read."""
        if self.detector is None:
            return None
        return self.detector(stego, self.detect_threshold)

    def reveal_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``reveal`` and ``detect`` of the same stegos (the extract job); engines of a model that registers do both
        with one registration search."""
        return self.reveal(stego), self.detect(stego)


class EmbedModule(torch.nn.Module):
    """The exported embed path: cover, secrets -> clamped stego (score-map head included)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        return self.model.embed(cover, secrets)


class RevealModule(torch.nn.Module):
    """The exported reveal path: stego -> clamped secrets (mirror sync included; the model's ``restore`` stage, a
    blind deblur, is not: the compiled engines run it before the graph, see ``CompiledEngine.restore``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, stego: torch.Tensor) -> torch.Tensor:
        return self.model.reveal_core(stego)


class TorchEngine(Engine):
    """Reference backend: the PyTorch model in fp32 (CPU) or fp16/fp32 (CUDA), eager."""

    def __init__(
        self, model: torch.nn.Module, size: int, model_sha256: str, device: str = "cpu", precision: str = "fp32"
    ) -> None:
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        cfg = model.config
        self.info = EngineInfo("torch", precision, size, cfg.channels, cfg.num_secrets, model_sha256, str(self.device))
        if cfg.coded:
            self.detector = lambda stego, threshold: self._run(lambda x: self.model.detect(x, threshold), stego)
            self.detect_threshold = model.detect_threshold

    def _run(self, fn, *arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ts = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device, self.dtype) for a in arrays]
            return fn(*ts).float().cpu().numpy()

    def embed(self, cover: np.ndarray, secrets: np.ndarray) -> np.ndarray:
        return self._run(self.model.embed, cover, secrets)

    def reveal(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        return self._run(lambda x: self.model.reveal(x, aligned), stego)

    def reveal_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.detector is None:  # no mark to read
            return super().reveal_and_detect(stego)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(stego)).to(self.device, self.dtype)
            secrets, scores = self.model.reveal_and_detect(x, self.detect_threshold)
            return secrets.float().cpu().numpy(), scores.float().cpu().numpy()
