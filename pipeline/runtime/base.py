"""The reference PyTorch backend (``TorchEngine``) and the modules the compiled backends export; the interface
is ``engine.py``."""

from __future__ import annotations

import copy

import numpy as np
import torch

from pipeline.model.digital.keys import Key
from pipeline.runtime.engine import Engine, EngineInfo
from pipeline.runtime.stages import AnalyticStages

__all__ = ["EmbedModule", "Engine", "EngineInfo", "RevealModule", "TorchEngine"]


class EmbedModule(torch.nn.Module):
    """The exported embed path: cover, secrets -> clamped stego (score-map head included)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        return self.model.embed_analog(cover, secrets)


class RevealModule(torch.nn.Module):
    """The exported reveal path: stego -> clamped secrets (mirror sync included; the model's ``restore`` stage, a
    blind deblur, is not: the compiled engines run it before the graph, see ``CompiledEngine.restore``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, stego: torch.Tensor) -> torch.Tensor:
        return self.model.reveal_core(stego)


class TorchEngine(Engine):
    """Reference backend: the PyTorch model in fp32 (CPU) or fp16/fp32 (CUDA), eager. ``model``: a model loaded by
    ``load_model`` (it carries its checkpoint's sha256 and name); moved to another device or precision, a copy runs
    and the caller's model stays as it was."""

    def __init__(
        self, model: torch.nn.Module, size: int, device: str = "cpu", precision: str = "fp32", key: Key | None = None
    ) -> None:
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        if self.device.type != "cpu" or self.dtype != torch.float32:
            model = copy.deepcopy(model)
        self.model = model.to(self.device, self.dtype).eval()
        cfg = model.config
        info = EngineInfo(
            "torch",
            precision,
            size,
            cfg.channels,
            cfg.num_secrets,
            model.checkpoint_sha256,
            str(self.device),
            model_name=model.model_name,
        )
        super().__init__(info, AnalyticStages(self.model, self.device, self.dtype, key))

    def _run(self, fn, *arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ts = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device, self.dtype) for a in arrays]
            return fn(*ts).float().cpu().numpy()

    def embed(self, cover: np.ndarray, secrets: np.ndarray) -> np.ndarray:
        return self._run(self.model.embed_analog, cover, secrets)

    def reveal(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        return self._run(lambda x: self.model.reveal_analog(x, aligned), stego)

    def reveal_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.stages.detects:  # no mark to read
            return super().reveal_and_detect(stego)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(stego)).to(self.device, self.dtype)
            secrets, scores = self.model.reveal_and_detect(x, self.detect_threshold)
            return secrets.float().cpu().numpy(), scores.float().cpu().numpy()
