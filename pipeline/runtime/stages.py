"""The model's analytic stages beside an engine's graphs: restore (registration, deblur), detection with its
calibrated threshold, and both with one registration search; and the digital layer, written after the embed graph
and read before the reveal graph, with the job's key. They have no exported graph: they run in torch, on numpy in
and out, on the model the job loaded (``HidingModel.restore``, ``detect``, ``restore_and_detect``, ``digital``)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.model.digital.codewords import level_secrets
from pipeline.model.digital.keys import Key
from pipeline.model.digital.layer import DigitalReading


class AnalyticStages:
    """The analytic stages of ``model`` (a ``HidingModel``) on ``device`` in ``dtype``: the compiled engines run them
    on the CPU in fp32 beside their graphs, the torch engine where its model runs.

    ``restores``: the model has a restore stage; ``detects``: a mark to read (the thumbnail code); ``searches``: it
    registers, so restore and detection share one search; ``threshold``: the calibrated detection threshold;
    ``digital``: the model's digital layer (None without one) and ``key`` the key it is written and read with.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        key: Key | None = None,
    ):
        from pipeline.model.digital.keys import resolve_key

        self.model, self.device, self.dtype = model, torch.device(device), dtype
        self.restores = model.restoration is not None
        self.detects = model.detector is not None
        self.searches = self.detects and model.registers
        self.threshold = model.detect_threshold if self.detects else None
        self.digital = model.digital
        self.key = resolve_key(key) if self.digital is not None else None

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

    def write_digital(
        self,
        cover: np.ndarray,
        analog: np.ndarray,
        secrets: np.ndarray,
        messages: list[bytes | None] | None = None,
        message_room: int | None = None,
    ) -> np.ndarray:
        """The embed graph's output (B, C, N, N) float32 -> with the analog change scaled and the digital layer
        written (``DigitalPart.embed``, clipped keeping luma: the jobs store it in 8 bits); ``cover`` and
        ``secrets`` as the graph took them."""
        with torch.inference_mode():
            t = self._tensor
            cover_t = t(cover)
            analog_t = cover_t if analog is cover else t(analog)  # the digital layer alone: no analog change to scale
            out = self.digital.embed(cover_t, analog_t, t(secrets), self.key, messages, message_room, keep_luma=True)
            return self._array(out)

    def read_digital(
        self, stego: np.ndarray, search: bool = True, on_grid: np.ndarray | None = None
    ) -> list[DigitalReading]:
        """The digital layer's reading of each image (B, C, H, W) float32 (``DigitalPart.read``; ``on_grid``
        (B, C, N, N): the images' exact area averages to the grid, for the unmoved hypothesis)."""
        grid = None if on_grid is None else torch.from_numpy(np.ascontiguousarray(on_grid)).float()
        with torch.inference_mode():
            return self.digital.read(torch.from_numpy(np.ascontiguousarray(stego)).float(), self.key, search, grid)

    def verify_digital(
        self,
        stego: np.ndarray,
        cover: np.ndarray,
        secrets: np.ndarray,
        messages: list[bytes | None] | None,
        message_room: int | None,
        lossless: bool,
    ) -> list[tuple[str | None, list[np.ndarray] | None]]:
        """What a receiver reads from each embedded image (B, C, N, N) float32, as written and back on the grid:
        (the most detailed level that decodes, or None; its K secrets as (N, N, 3) uint8). A level that decodes
        gives its streams' bytes exactly, so its secrets are those streams decoded (``PreparedSecrets.decoded``).
        ``lossless``: the output format keeps the pixels (PNG, lossless WebP), so a level read without error needs
        no decoding."""
        t = self._tensor
        layer = self.digital.layer(self.key)
        messages = messages if messages is not None else [None] * len(stego)
        levels: list[str | None] = [None] * len(stego)
        prepared, groups = self.digital.prepare_batch(layer, t(secrets), message_room)
        with torch.inference_mode():
            for p, idx in groups:
                x = t(stego[idx])
                if lossless:
                    found = layer.written_levels(x, t(cover[idx]), p, [messages[i] for i in idx])
                else:
                    found = [r.level for r in layer.read(x, search=False)]
                for i, level in zip(idx, found, strict=True):
                    levels[i] = level
        return level_secrets(levels, prepared, layer.config)
