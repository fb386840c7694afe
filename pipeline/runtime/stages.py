"""The model's analytic stages beside an engine's graphs: restore (registration, deblur), detection with its
calibrated threshold, and both with one registration search. They have no exported graph: they run in torch, on
numpy in and out, on the model the job loaded (``HidingModel.restore``, ``detect``, ``restore_and_detect``)."""

from __future__ import annotations

import numpy as np
import torch


class AnalyticStages:
    """The analytic stages of ``model`` (a ``HidingModel``) on ``device`` in ``dtype``: the compiled engines run them
    on the CPU in fp32 beside their graphs, the torch engine where its model runs.

    ``restores``: the model has a restore stage; ``detects``: a mark to read (the thumbnail code); ``searches``: it
    registers, so restore and detection share one search; ``threshold``: the calibrated detection threshold.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.model, self.device, self.dtype = model, torch.device(device), dtype
        self.restores = model.restoration is not None
        self.detects = model.detector is not None
        self.searches = self.detects and model.registers
        self.threshold = model.detect_threshold if self.detects else None

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, self.dtype)

    @staticmethod
    def _array(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().numpy()

    def restore(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        """(B, C, N, N) float32 -> the restored stegos; ``aligned`` as in ``HidingModel.restore``."""
        with torch.inference_mode():
            return self._array(self.model.restore(self._tensor(stego), aligned))

    def detect(self, stego: np.ndarray, threshold: float | None) -> np.ndarray:
        """(B, C, H, W) float32 -> (B,) mark scores (``HidingModel.detect``)."""
        with torch.inference_mode():
            return self._array(self.model.detect(self._tensor(stego), threshold))

    def restore_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, C, N, N) float32 -> (the restored stegos, mark scores (B,)) with one registration search."""
        with torch.inference_mode():
            restored, scores = self.model.restore_and_detect(self._tensor(stego))
            return self._array(restored), self._array(scores)
