"""SRIS-Net and its baselines. ``build_model(config)`` makes an untrained network; see ``pipeline.model.io``."""

from pipeline.model.config import PRESETS, ModelConfig, get_config
from pipeline.model.sris import SRISNet


def build_model(cfg: ModelConfig):
    """An untrained network for ``cfg`` (SRIS-Net or a baseline), all with ``embed`` / ``reveal``."""
    if cfg.arch == "sris":
        return SRISNet(cfg)
    from pipeline.model import baselines

    return baselines.build(cfg)


__all__ = ["PRESETS", "ModelConfig", "SRISNet", "build_model", "get_config"]
