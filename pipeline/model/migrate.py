"""Versioned checkpoint migration: a checkpoint written by any earlier version of the model code loads today.

A checkpoint holds a config dict and a state dict. Each version step maps both forward, so ``load_model`` on an old
file builds today's classes with the same weights and gives the same outputs (``tests/test_migrate.py`` holds that
on recorded outputs of the old code). Versions:

- 1 (format ``sris-pipeline/model-1``, no ``version`` key): the analytic code was called the carrier, the residual
  code the fine code, mirror handling was three booleans, legacy options sat at the top level.
- 2: ``ModelConfig`` of ``pipeline/model/config.py`` (``thumbnail_code``, ``residual_gain``, ``mirror``, ``legacy``).
"""

from __future__ import annotations

from typing import Any

from pipeline.model.config import CONFIG_VERSION

_V1_RENAMES = {
    "carrier": "thumbnail_code",
    "carrier_amplitude": "thumbnail_amplitude",
    "fine_gain": "residual_gain",
    "sync_amplitude": "pattern_amplitude",
}


def config_version(d: dict[str, Any]) -> int:
    return int(d.get("version", 1))


def _config_v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    # Written before mirror synchronisation existed: the learned flip head only. Before the carrier: none.
    if "flip_sync" not in d:
        d = {"flip_head": True, "flip_sync": False, **d}
    d.setdefault("carrier", False)
    flip_sync, mirror_pilot = d.pop("flip_sync", True), d.pop("mirror_pilot", False)
    d["mirror"] = "pilot" if mirror_pilot else "pattern" if flip_sync else "none"
    extra = dict(d.pop("extra", None) or {})
    d["legacy"] = {
        "flip_head": bool(d.pop("flip_head", False)),
        "texture_weighting": float(d.pop("carrier_texture", 0.0)),
        "reveal": extra.pop("reveal", None) or {},
    }
    d["extra"] = extra
    d = {_V1_RENAMES.get(k, k): v for k, v in d.items()}
    d["version"] = 2
    return d


def _state_v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    return {k.replace(".carrier.", ".thumbnail."): v for k, v in state.items()}


_STEPS = {1: (_config_v1_to_v2, _state_v1_to_v2)}


def migrate_config(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict of any version -> the current version's dict."""
    return migrate(d, {})[0]


def migrate_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Config field overrides (a training run's ``model_overrides``) written with version-1 names -> today's."""
    d = dict(overrides)
    if d.pop("mirror_pilot", False):
        d["mirror"] = "pilot"
    if d.pop("flip_sync", True) is False and "mirror" not in d:
        d["mirror"] = "none"
    return {_V1_RENAMES.get(k, k): v for k, v in d.items()}


def migrate(config: dict[str, Any], state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkpoint's (config, state dict) of any version -> the current version's."""
    version = config_version(config)
    if version > CONFIG_VERSION:
        raise ValueError(f"config version {version} is newer than this code's {CONFIG_VERSION}: upgrade sris-pipeline")
    while version < CONFIG_VERSION:
        to_config, to_state = _STEPS[version]
        config, state = to_config(config), to_state(state)
        version = config_version(config)
    return config, state
