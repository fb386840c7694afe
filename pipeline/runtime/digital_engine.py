"""The engine of an embed job whose network writes nothing: the digital layer in NumPy, and no torch until an image
needs the network.

The shipped models write the digital layer alone (their analog share is 0), and ``--layers digital`` asks for it
with any model that has the layer. Such a job's engine needs the layer's configuration and key, not the network:
the model's card (``pipeline/weights/sris_fast.json`` beside ``sris_fast.pt``) holds the configuration, and the
weights' sha256 is checked against it as ``load_model`` checks it. The torch engine, loaded on first use, serves
what the NumPy layer does not (a full-size compose, a lossy output's check with the torch reader); the jobs never
ask it to reveal, as the network wrote nothing. Importing torch and loading the model were 1.5 s of a 256 px job's
start on a 2-core CPU.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.model.card import CardError, check_card, read_card
from pipeline.model.config import ModelConfig
from pipeline.model.digital.keys import Key, resolve_key
from pipeline.model.shipped import file_sha256, resolve_checkpoint
from pipeline.runtime.engine import Engine, EngineInfo

if TYPE_CHECKING:
    from pipeline.model.digital.config import DigitalConfig
    from pipeline.runtime.stages import AnalyticStages


@dataclass(frozen=True)
class CardModel:
    """A model known from its card alone: its weights file, their sha256 (checked), configuration and name."""

    path: Path
    sha256: str
    config: ModelConfig
    name: str


def network_free_model(checkpoint: str | None, layers: str, size: int) -> CardModel | None:
    """The model ``checkpoint`` names (``resolve_checkpoint``), from its card, where an embed job at ``size`` runs no
    network with it: the card's configuration has the digital layer on a grid of ``size``, and the analog share is 0
    or ``layers`` is ``digital``. None otherwise (no card, weights the card does not name, a model the network
    writes with): the job then loads the model in torch, which also explains any problem with the file."""
    path = resolve_checkpoint(checkpoint)
    try:
        card = read_card(path) if path.is_file() else None
        if card is None:
            return None
        sha256 = file_sha256(path)
        check_card(card, path, sha256)  # weights the card does not name: the loader refuses them, saying why
        config = ModelConfig.from_dict(card["config"])
    except (CardError, OSError, KeyError, TypeError, ValueError):
        return None
    if config.digital.size != size or not config.digital.writes_alone(layers):
        return None
    return CardModel(path, sha256, config, str(card.get("name") or path.stem))


class DigitalEngine(Engine):
    """A ``CardModel``'s engine for the embed job: ``cpu_digital`` writes and checks the layer; ``embed``, ``reveal``
    and ``stages`` load the torch engine of the same weights the first time they are used."""

    def __init__(self, model: CardModel, size: int, key: Key | None = None) -> None:
        cfg = model.config
        # The network that may run is the torch model in fp32 on the CPU: the manifest says so.
        self.info = EngineInfo(
            "torch", "fp32", size, cfg.channels, cfg.num_secrets, model.sha256, model_name=model.name
        )
        self.build_seconds = 0.0
        self.model = model
        self._key = resolve_key(key)
        self._network: Engine | None = None
        self._lock = threading.Lock()

    def network(self) -> Engine:
        """The torch engine of the same weights (loaded once, on first use)."""
        with self._lock:
            if self._network is None:
                from pipeline.runtime import load_engine

                self._network = load_engine("torch", str(self.model.path), self.info.size, key=self._key)
            return self._network

    @property
    def stages(self) -> AnalyticStages:
        return self.network().stages

    @property
    def digital(self) -> bool:
        return True

    @property
    def digital_config(self) -> DigitalConfig:
        return self.model.config.digital

    @property
    def key(self) -> Key:
        return self._key

    @property
    def network_loaded(self) -> bool:
        """Whether anything has needed the network (and so torch) yet."""
        return self._network is not None

    def embed(self, cover: np.ndarray, secrets: np.ndarray) -> np.ndarray:
        return self.network().embed(cover, secrets)

    def reveal(self, stego: np.ndarray, aligned: bool = False) -> np.ndarray:
        return self.network().reveal(stego, aligned)
