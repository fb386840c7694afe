"""Versioned checkpoint migration: a checkpoint written by any earlier version of the model code loads today.

A checkpoint holds a config dict and a state dict. Each version step maps both forward, so ``load_model`` on an old
file builds today's classes with the same weights and gives the same outputs (``tests/test_migrate.py`` holds that
on recorded outputs of the old code). Versions:

- 1 (format ``sris-pipeline/model-1``, no ``version`` key): the analytic code was called the carrier, the residual
  code the fine code, mirror handling was three booleans, legacy options sat at the top level.
- 2: one flat ``ModelConfig`` (``thumbnail_code``, ``residual_gain``, ``mirror``, ``extra``, ``legacy``); fields
  added during version 2 (``detail_secrets``, ``code_last``, ``base_layout``) were left out by older files and
  filled by the defaults of the day.
- 3: ``ModelConfig`` in sections (network, ablation, codes, legacy), every field written. The thumbnail code's maps
  and the legacy flip head left the learned paths' modules: ``thumbnail.writer.*``, ``thumbnail.reader.*`` and
  ``flip_head.*`` in the state dict, where version 2 had ``embedder.thumbnail.*``, ``revealer.thumbnail.*`` and
  ``revealer.flip.*``.

A step fills every field its version added with the value the older code used, written out here: a default that
changes later never changes what an old file means.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.model.config import CONFIG_VERSION, ModelConfig

_V1_RENAMES = {
    "carrier": "thumbnail_code",
    "carrier_amplitude": "thumbnail_amplitude",
    "fine_gain": "residual_gain",
    "sync_amplitude": "pattern_amplitude",
}

# What a version-2 config meant by a field it does not hold: the version-2 code's defaults.
V2_DEFAULTS: dict[str, Any] = {
    "arch": "sris",
    "channels": 3,
    "num_secrets": 1,
    "width": 48,
    "stem_stride": 4,
    "levels": 3,
    "level_widths": [48, 96, 96, 96],
    "dms_widths": [48, 96],
    "dms_blocks": 2,
    "dilations": [1, 2, 3],
    "disc_width": 16,
    "score_floor": 0.3,
    "lpfdd": True,
    "glem_global": True,
    "sfm": True,
    "score_map": True,
    "light_score": False,
    "thumbnail_code": True,
    "thumbnail_amplitude": 10.0,
    "detail_secrets": 1,
    "code_last": False,
    "base_layout": "low",
    "base_tile": False,
    "residual_gain": 0.0,
    "deblur": False,
    "register": False,
    "mirror": "pattern",
    "pattern_amplitude": 1.0,
}
V2_LEGACY_DEFAULTS: dict[str, Any] = {"flip_head": False, "texture_weighting": 0.0, "reveal": {}}
# The baseline depths version 2 kept in ``extra`` when they differed from these.
V2_EXTRA_DEFAULTS: dict[str, Any] = {"hinet_blocks": 6, "unet_depth": 3}

_V2_STATE_MOVES = (
    ("embedder.thumbnail.", "thumbnail.writer."),
    ("revealer.thumbnail.", "thumbnail.reader."),
    ("revealer.flip.", "flip_head."),
)


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


# Where each version-2 field (and ``extra`` key) went in version 3. Written out, not taken from today's config: a
# later version may rename a field, and this step must still produce version 3.
_V2_TO_V3 = {
    "channels": "channels",
    "num_secrets": "num_secrets",
    **{
        name: f"network.{name}"
        for name in [
            "arch",
            "width",
            "stem_stride",
            "levels",
            "level_widths",
            "dms_widths",
            "dms_blocks",
            "dilations",
            "disc_width",
            "score_floor",
            "light_score",
            "hinet_blocks",
            "unet_depth",
        ]
    },
    **{name: f"ablation.{name}" for name in ("lpfdd", "glem_global", "sfm", "score_map")},
    "thumbnail_code": "codes.thumbnail.enabled",
    "thumbnail_amplitude": "codes.thumbnail.amplitude",
    "detail_secrets": "codes.thumbnail.detail_secrets",
    "code_last": "codes.thumbnail.code_last",
    "base_layout": "codes.thumbnail.base_layout",
    "base_tile": "codes.thumbnail.base_tile",
    "residual_gain": "codes.residual.gain",
    "deblur": "codes.deblur.enabled",
    "register": "codes.register.enabled",
    "mirror": "codes.mirror.decision",
    "pattern_amplitude": "codes.mirror.pattern_amplitude",
}


def _config_v2_to_v3(d: dict[str, Any]) -> dict[str, Any]:
    """The flat version-2 dict in sections, every field written (the version-2 defaults where the file has none)."""
    flat = {**V2_DEFAULTS, **{k: v for k, v in d.items() if k not in ("version", "extra", "legacy")}}
    unknown = sorted(set(flat) - set(V2_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown version-2 config field(s): {', '.join(unknown)}")
    flat.update({**V2_EXTRA_DEFAULTS, **(d.get("extra") or {})})
    out: dict[str, Any] = {"version": 3}
    for name in _V2_TO_V3:  # in version 3's order of fields
        *sections, leaf = _V2_TO_V3[name].split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        value = flat[name]
        node[leaf] = list(value) if isinstance(value, tuple) else value
    out["legacy"] = {**V2_LEGACY_DEFAULTS, **(d.get("legacy") or {})}
    return out


def _state_v2_to_v3(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        for old, new in _V2_STATE_MOVES:
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        out[k] = v
    return out


# Version 4 added the digital layer's section. A version-3 model has none: written out in full, switched off (and
# the analog path at its whole budget), not taken from today's defaults.
V3_DIGITAL: dict[str, Any] = {
    "enabled": False,
    "levels": [
        {
            "name": "base",
            "coeffs": [[0, 1], [1, 0], [2, 0], [0, 2]],
            "step": 2.6,
            "payload": 96,
            "floor": 0.0,
            "message": True,
        },
        {
            "name": "main",
            "coeffs": [[0, 3], [1, 2], [2, 1], [3, 0], [4, 0], [2, 2], [0, 4]],
            "step": 1.0,
            "payload": 240,
            "floor": 0.0,
            "message": False,
        },
        {
            "name": "top",
            "coeffs": [[0, 7], [7, 0], [6, 2], [2, 6], [2, 7], [7, 2], [1, 1], [1, 3], [3, 1], [3, 3], [1, 5], [5, 1]],
            "step": 0.05,
            "payload": 640,
            "floor": 3.0,
            "message": False,
        },
    ],
    "size": 256,
    "flat_std": 2.0,
    "reader_flat_std": 3.0,
    "alpha": 1.0,
    "max_message": 32,
    "analog_gain": 1.0,
    "analog_flat_gain": 1.0,
}


def _config_v3_to_v4(d: dict[str, Any]) -> dict[str, Any]:
    """Version 3 with the digital section, off (``V3_DIGITAL``), before ``legacy`` as version 4 orders them."""
    out = {k: v for k, v in d.items() if k != "legacy"}
    out["version"] = 4
    out["digital"] = json.loads(json.dumps(V3_DIGITAL))  # a copy no caller can alter
    out["legacy"] = d["legacy"]
    return out


_STEPS = {
    1: (_config_v1_to_v2, _state_v1_to_v2),
    2: (_config_v2_to_v3, _state_v2_to_v3),
    3: (_config_v3_to_v4, lambda state: state),
}


def migrate_config(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict of any version -> the current version's dict."""
    return migrate(d, {})[0]


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """A ``ModelConfig`` from a config dict of any version (a checkpoint's ``config``)."""
    return ModelConfig.from_dict(migrate_config(d))


def migrate_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Config field overrides (a training run's ``model_overrides``) written with version-1 names -> today's short
    names (``ModelConfig.with_overrides``)."""
    d = dict(overrides)
    if d.pop("mirror_pilot", False):
        d["mirror"] = "pilot"
    if d.pop("flip_sync", True) is False and "mirror" not in d:
        d["mirror"] = "none"
    extra = d.pop("extra", None) or {}
    return {**{_V1_RENAMES.get(k, k): v for k, v in d.items()}, **extra}


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
