"""An engine seen as a hiding model: ``embed`` and ``reveal`` on torch tensors, so that the validation code
(``pipeline.evaluate.quick``) measures a compiled engine exactly as it measures the torch model.

``validate --backend openvino --precision int8`` runs through this: the quality change of an engine precision is
read on the same photos, attacks and codecs as the model's own figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.runtime.base import Engine


class EngineAsModel:
    """``engine``'s embed and reveal as ``HidingModel.embed`` / ``reveal`` take and return them: (B, C, N, N) float
    tensors in [0, 1] on the CPU, at the engine's size N. ``config`` and ``model_name`` are the loaded model's."""

    def __init__(self, engine: Engine, model: Any) -> None:
        self.engine = engine
        self.config = model.config
        self.model_name = getattr(model, "model_name", "")

    @staticmethod
    def _array(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().float().cpu().numpy())

    def embed(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """(B, C, N, N), (B, K*C, N, N) -> stego (B, C, N, N) in [0, 1]."""
        return torch.from_numpy(self.engine.embed(self._array(cover), self._array(secrets)))

    def reveal(self, stego: torch.Tensor) -> torch.Tensor:
        """(B, C, N, N) -> secrets (B, K*C, N, N) in [0, 1]: the engine's restore stage (registration, deblur), then
        its reveal graph, as ``HidingModel.reveal`` does."""
        return torch.from_numpy(self.engine.reveal(self._array(stego)))
