"""SRIS-Net and its baselines.

Layout: ``sris/`` holds the paper's parts (LPFDD, GLEM, DMSubNet, the dual-task discriminator, the embed/reveal net
and its folded inference graph); ``codes/`` holds our own analytic parts (the thumbnail code, the residual code, the
blind deblur, the mirror decision); ``baselines.py`` the HiNet-style and U-Net baselines; ``config.py`` the
``ModelConfig``; ``checkpoint.py`` and ``migrate.py`` saving and loading checkpoints of any version; ``legacy.py``
what only old checkpoints use. ``build_model(config)`` makes an untrained network, ``load_model(path)`` a trained one.
"""

from pipeline.model.config import PRESETS, ModelConfig, get_config
from pipeline.model.sris.net import SRISNet


def build_model(cfg: ModelConfig):
    """An untrained network for ``cfg`` (SRIS-Net or a baseline), all with ``embed`` / ``reveal``."""
    if cfg.network.arch == "sris":
        return SRISNet(cfg)
    from pipeline.model import baselines

    return baselines.build(cfg)


def load_model(path=None, device="cpu"):
    """A trained model for inference (``pipeline.model.checkpoint.load_model``): the shipped default for ``None``, a
    shipped model by name (``"k1"``, ``"k2"``, ``"k4"``: secrets per cover), or a checkpoint file."""
    from pipeline.model.checkpoint import load_model as _load

    return _load(path, device)


__all__ = ["PRESETS", "ModelConfig", "SRISNet", "build_model", "get_config", "load_model"]
