"""``build_model(config)``: an untrained network for a config, SRIS-Net or a baseline."""

from __future__ import annotations

from pipeline.model.config import ModelConfig
from pipeline.model.sris.net import SRISNet


def build_model(cfg: ModelConfig):
    """An untrained network for ``cfg`` (SRIS-Net or a baseline), all with ``embed`` / ``reveal``."""
    if cfg.arch == "sris":
        return SRISNet(cfg)
    from pipeline.model import baselines

    return baselines.build(cfg)
