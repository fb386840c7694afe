"""``ModelConfig`` as data: its fields by version, the short names, and the presets."""

from __future__ import annotations

import pytest

from pipeline.model.config import CONFIG_VERSION, PRESETS, SHORT_NAMES, ModelConfig, field_paths, get_config
from pipeline.model.migrate import _STEPS, migrate_config

# Every field of each version of the config, as written in checkpoints. A field added, renamed or removed is a new
# version: add its list here, bump ``CONFIG_VERSION`` and write the migration step that fills it explicitly.
RECORDED_FIELDS = {
    3: [
        "channels",
        "num_secrets",
        "network.arch",
        "network.width",
        "network.stem_stride",
        "network.levels",
        "network.level_widths",
        "network.dms_widths",
        "network.dms_blocks",
        "network.dilations",
        "network.disc_width",
        "network.score_floor",
        "network.light_score",
        "network.hinet_blocks",
        "network.unet_depth",
        "ablation.lpfdd",
        "ablation.glem_global",
        "ablation.sfm",
        "ablation.score_map",
        "codes.thumbnail.enabled",
        "codes.thumbnail.amplitude",
        "codes.thumbnail.detail_secrets",
        "codes.thumbnail.code_last",
        "codes.thumbnail.base_layout",
        "codes.thumbnail.base_tile",
        "codes.residual.gain",
        "codes.deblur.enabled",
        "codes.register.enabled",
        "codes.mirror.decision",
        "codes.mirror.pattern_amplitude",
        "legacy.flip_head",
        "legacy.texture_weighting",
        "legacy.reveal",
    ],
    4: [
        "channels",
        "num_secrets",
        "network.arch",
        "network.width",
        "network.stem_stride",
        "network.levels",
        "network.level_widths",
        "network.dms_widths",
        "network.dms_blocks",
        "network.dilations",
        "network.disc_width",
        "network.score_floor",
        "network.light_score",
        "network.hinet_blocks",
        "network.unet_depth",
        "ablation.lpfdd",
        "ablation.glem_global",
        "ablation.sfm",
        "ablation.score_map",
        "codes.thumbnail.enabled",
        "codes.thumbnail.amplitude",
        "codes.thumbnail.detail_secrets",
        "codes.thumbnail.code_last",
        "codes.thumbnail.base_layout",
        "codes.thumbnail.base_tile",
        "codes.residual.gain",
        "codes.deblur.enabled",
        "codes.register.enabled",
        "codes.mirror.decision",
        "codes.mirror.pattern_amplitude",
        "digital.enabled",
        "digital.levels",
        "digital.size",
        "digital.flat_std",
        "digital.reader_flat_std",
        "digital.alpha",
        "digital.max_message",
        "digital.analog_gain",
        "digital.analog_flat_gain",
        "legacy.flip_head",
        "legacy.texture_weighting",
        "legacy.reveal",
    ],
}


def test_a_changed_field_set_needs_a_new_config_version() -> None:
    """Fails when ``ModelConfig`` gains, loses or renames a field and ``CONFIG_VERSION`` stays: older checkpoints
    would then be read with today's default for the new field, silently."""
    assert CONFIG_VERSION in RECORDED_FIELDS, f"record the fields of version {CONFIG_VERSION} here"
    assert field_paths(ModelConfig) == RECORDED_FIELDS[CONFIG_VERSION], (
        "ModelConfig's fields changed: bump CONFIG_VERSION, add a migration step that writes the new field "
        "explicitly (pipeline/model/migrate.py) and record the new list in RECORDED_FIELDS"
    )
    assert set(_STEPS) == set(range(1, CONFIG_VERSION)), "one migration step per older version"


def test_every_older_version_migrates_to_every_field() -> None:
    """A config as each older version wrote it (version 2's defaults, taken forward step by step) migrates to one
    with every field of today's version."""
    older = {"version": 2}
    for version in range(2, CONFIG_VERSION):
        assert ModelConfig.from_dict(migrate_config(older)) is not None
        older = _STEPS[version][0](older)
    assert ModelConfig.from_dict(migrate_config(get_config("tiny").to_dict())) is not None


def test_short_names_reach_every_field_once() -> None:
    whole = ("legacy", "digital")  # sections overridden whole
    targets = [p for p in SHORT_NAMES.values() if p not in whole]
    assert len(targets) == len(set(targets))
    assert set(targets) | {p for p in field_paths() if p.split(".")[0] in whole} == set(field_paths())


def test_round_trip_and_overrides() -> None:
    cfg = get_config(
        "fast", residual_gain=0.06, **{"codes.thumbnail.base_tile": True}, legacy={"reveal": {"width": 48}}
    )
    assert cfg.codes.residual.gain == 0.06 and cfg.codes.thumbnail.base_tile and cfg.legacy.reveal == {"width": 48}
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config field"):
        get_config("fast", no_such_field=1)
    with pytest.raises(ValueError, match="version-2 config"):
        ModelConfig.from_dict({**cfg.to_dict(), "version": 2})
    assert {"tiny", "small", "fast", "paper"} <= set(PRESETS)
