"""The engine interface every backend implements (the reference PyTorch backend: ``base.py``).

An engine runs the two compiled paths of a model at one static image size N with a dynamic batch, with the model's
analytic stages beside them (``stages.py``):

    embed(cover, secrets) -> stego       cover (B, C, N, N), secrets (B, K*C, N, N), float32 numpy in [0, 1]
    reveal(stego) -> secrets             stego (B, C, N, N) -> (B, K*C, N, N), float32 numpy in [0, 1]
    restore(stego) -> stego              registration and deblur before the reveal graph (identity without)
    detect(stego) -> scores              (B,) float32 mark scores, or None (no mark to read)
    restore_and_detect, reveal_and_detect    both at once, with one registration search where the model registers
    detect_threshold                     the score from which an image counts as marked (the checkpoint's value)

Outputs are clamped to [0, 1] (not rounded: rounding to 8 bits happens where images are written). Engines take and
return numpy arrays so that the job code does not care which library runs the network. Every engine is complete
when its constructor returns: its graphs, its stages and threshold, how long its build took.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.model.digital.config import DigitalConfig
    from pipeline.model.digital.keys import Key
    from pipeline.runtime.digital_cpu import CpuDigitalStage
    from pipeline.runtime.stages import AnalyticStages


@dataclass(frozen=True)
class EngineInfo:
    """What runs: backend, precision, image size N, model shape, checkpoint hash and name; ``engine_files`` holds
    the (file name, sha256) of the compiled engines (empty for torch), for job manifests."""

    backend: str
    precision: str
    size: int
    channels: int
    num_secrets: int
    model_sha256: str
    device: str = "cpu"
    engine_files: tuple[tuple[str, str], ...] = ()
    model_name: str = ""


class Engine(ABC):
    """A loaded embed + reveal pair and the model's analytic stages: every method the jobs call.

    ``stages``: the analytic stages (None for a model without any); ``build_seconds``: what ``load_engine`` spent
    building missing engines for this one (0: they were built already).
    """

    def __init__(self, info: EngineInfo, stages: AnalyticStages | None = None, build_seconds: float = 0.0) -> None:
        self.info = info
        self.stages = stages
        self.build_seconds = build_seconds

    @property
    def detect_threshold(self) -> float | None:
        """The calibrated detection threshold (None: never calibrated, or no mark to read)."""
        return None if self.stages is None else self.stages.threshold

    @property
    def digital(self) -> bool:
        """The model writes and reads a digital layer (``write_digital``, ``read_digital``)."""
        return self.stages is not None and self.stages.digital is not None

    @property
    def digital_config(self) -> DigitalConfig | None:
        """The digital layer's configuration (None without one)."""
        return self.stages.digital.config if self.digital else None

    @property
    def key(self) -> Key | None:
        """The key the digital layer is written and read with (None without a layer)."""
        return self.stages.key if self.digital else None

    @functools.cached_property
    def cpu_digital(self) -> CpuDigitalStage | None:
        """The digital layer in NumPy (``runtime.digital_cpu``): the jobs write it with it where no network runs and
        check every lossless stego with it. None without a digital layer."""
        if not self.digital:
            return None
        from pipeline.runtime.digital_cpu import CpuDigitalStage

        return CpuDigitalStage(self.digital_config, self.key)

    @abstractmethod
    def embed(self, cover: np.ndarray, secrets: np.ndarray) -> np.ndarray:
        """The embed graph: the analog path's stego (the digital layer is ``write_digital``)."""

    @abstractmethod
    def reveal(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        """``aligned``: the stego sits where it was embedded (the embed job's verify), so a model with registration
        skips its search (``HidingModel.restore``); the result is the same for such a stego."""

    def restore(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        """The restore stage (registration, deblur) on (B, C, N, N) float32 stegos; identity without one."""
        if self.stages is None or not self.stages.restores:
            return stego
        return self.stages.restore(stego, aligned)

    def detect(self, stego: np.ndarray) -> np.ndarray | None:
        """(B, C, N, N) float32 in [0, 1] -> (B,) float32 mark scores; None when the model has no mark to read."""
        if self.stages is None or not self.stages.detects:
            return None
        return self.stages.detect(stego, self.detect_threshold)

    def restore_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``restore`` and ``detect`` of the same stegos; a model that registers does both with one search."""
        if self.stages is not None and self.stages.searches:
            return self.stages.restore_and_detect(stego)
        return self.restore(stego), self.detect(stego)

    def reveal_and_detect(self, stego: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``reveal`` and ``detect`` of the same stegos (the extract job); engines of a model that registers do both
        with one registration search."""
        return self.reveal(stego), self.detect(stego)
