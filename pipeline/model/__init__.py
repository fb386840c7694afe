"""The hiding model: SRIS-Net (or a baseline) with our analytic codes, assembled from named parts.

Layout: ``sris/`` holds the paper's learned parts (LPFDD, GLEM, DMSubNet, the dual-task discriminator, the embed and
reveal paths) and nothing of ours; ``codes/`` holds our analytic parts (the thumbnail code, the residual code, the
mirror decision, registration and deblur, the restore stage); ``baselines.py`` the HiNet-style and U-Net learned
networks; ``legacy.py`` what only old checkpoints use; ``hiding.py`` the ``HidingModel`` (how an image flows through
the parts) and ``compose.py`` how the parts are built from a config; ``inference.py`` the folded inference graph the
engines export; ``config.py`` the ``ModelConfig``; ``checkpoint.py``, ``migrate.py`` and ``card.py`` saving and
loading checkpoints of any version and the shipped models' cards. ``build_model(config)`` makes an untrained model,
``load_model(path)`` a trained one.
"""

from pipeline.model.compose import build_model, with_digital
from pipeline.model.config import PRESETS, ModelConfig, get_config
from pipeline.model.hiding import HidingModel


def load_model(path=None, device="cpu"):
    """A trained model for inference (``pipeline.model.checkpoint.load_model``): the shipped default for ``None``, a
    shipped model by name (``"k1"``, ``"k2"``, ``"k4"``: secrets per cover), or a checkpoint file."""
    from pipeline.model.checkpoint import load_model as _load

    return _load(path, device)


__all__ = ["PRESETS", "HidingModel", "ModelConfig", "build_model", "get_config", "load_model", "with_digital"]
