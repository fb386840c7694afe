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

from typing import Any

# Lazy (PEP 562): importing a part of the package that needs no torch (the digital layer's channel code, which the
# LDPC worker process imports) must not build the model's modules.
_LAZY = {
    "build_model": "pipeline.model.compose",
    "with_digital": "pipeline.model.compose",
    "PRESETS": "pipeline.model.config",
    "ModelConfig": "pipeline.model.config",
    "get_config": "pipeline.model.config",
    "HidingModel": "pipeline.model.hiding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("inference", "baselines"):  # submodules imported as attributes (``from pipeline.model import x``)
        import importlib

        return importlib.import_module(f"pipeline.model.{name}")
    raise AttributeError(f"module 'pipeline.model' has no attribute {name!r}")


def load_model(path=None, device="cpu"):
    """A trained model for inference (``pipeline.model.checkpoint.load_model``): the shipped default for ``None``, a
    shipped model by name (``"k1"``, ``"k2"``, ``"k4"``: secrets per cover), or a checkpoint file."""
    from pipeline.model.checkpoint import load_model as _load

    return _load(path, device)


__all__ = ["PRESETS", "HidingModel", "ModelConfig", "build_model", "get_config", "load_model", "with_digital"]
