"""Versioned checkpoint migration (``pipeline/model/migrate.py``): version-1 checkpoints load into today's classes
and give the outputs the version-1 code gave.

The fixtures in ``tests/fixtures/v1/`` were written by the version-1 code (commit 9deeead): three small checkpoints
that between them use every option the migration maps (the carrier, the fine code, the mirror-sync pattern, the
learned flip head, the texture weighting, a revealer override, the folded inference graph), and their outputs on
fixed inputs: the stego (8-bit), and the secrets revealed from it, from its mirror and from a 3x3 Gaussian-blurred
copy (the blind deblur). The shipped file was a fourth case while it was a version-1 file (stage 14).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.model.checkpoint import (
    FORMAT,
    load_model,
    read_checkpoint,
    save_checkpoint,
    shipped_path,
)
from pipeline.model.config import CONFIG_VERSION, ModelConfig, field_paths
from pipeline.model.migrate import config_from_dict, migrate_config

V1 = Path(__file__).parent / "fixtures" / "v1"
CASES = {
    "legacy_texture_pattern": V1 / "legacy_texture_pattern.pt",
    "legacy_flip_head": V1 / "legacy_flip_head.pt",
    "pattern_lean": V1 / "pattern_lean.pt",
}


def _leaf_paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if k == "version":
            continue
        leaf = not isinstance(v, dict) or f"{prefix}{k}" == "legacy.reveal"
        out += [prefix + k] if leaf else _leaf_paths(v, f"{prefix}{k}.")
    return out


def _outputs(model: torch.nn.Module, recorded: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    cover, secrets = torch.from_numpy(recorded["cover"]), torch.from_numpy(recorded["secrets"])
    k = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    c = cover.shape[1]
    with torch.no_grad():
        stego = (model.embed(cover, secrets) * 255).round() / 255
        # Reveal reads the recorded stego, so an 8-bit rounding flip in embed cannot hide a change in reveal.
        old = torch.from_numpy(recorded["stego"])
        blurred = torch.nn.functional.conv2d(
            torch.nn.functional.pad(old, (1, 1, 1, 1), mode="reflect"), k.expand(c, 1, 3, 3).contiguous(), groups=c
        )
        return {
            "stego": stego,
            "reveal": model.reveal(old),
            "reveal_mirrored": model.reveal(old.flip(-1)),
            "reveal_blurred": model.reveal(blurred),
        }


@pytest.mark.parametrize("name", list(CASES))
def test_version1_checkpoints_give_their_recorded_outputs(name: str) -> None:
    recorded = dict(np.load(V1 / f"{name}.npz"))
    model = load_model(CASES[name])
    got = _outputs(model, recorded)
    # The stego is 8-bit: at most a rare one-level rounding flip. The secrets are floats: float rounding only.
    stego_diff = (got["stego"] - torch.from_numpy(recorded["stego"])).abs()
    assert stego_diff.max().item() <= 1 / 255 + 1e-6
    assert (stego_diff > 1e-6).float().mean().item() < 1e-3
    for key in ("reveal", "reveal_mirrored", "reveal_blurred"):
        assert (got[key] - torch.from_numpy(recorded[key])).abs().max().item() < 2e-4, key


def test_migration_maps_every_version1_option() -> None:
    cfg = read_checkpoint(V1 / "legacy_texture_pattern.pt")["config"]
    assert cfg["version"] == CONFIG_VERSION
    m = ModelConfig.from_dict(cfg)
    assert m.codes.thumbnail.enabled and m.codes.residual.gain == pytest.approx(0.06)
    assert m.codes.mirror.decision == "pattern"
    assert m.legacy.texture_weighting == pytest.approx(0.5) and not m.legacy.flip_head
    m = load_model(V1 / "legacy_flip_head.pt").config
    assert not m.codes.thumbnail.enabled and m.codes.mirror.decision == "none" and m.legacy.flip_head
    assert m.legacy.reveal == {"width": 12, "level_widths": [12, 12, 12]} and m.network.hinet_blocks == 6
    shipped = load_model().config  # the shipped file
    assert shipped.codes.mirror.decision == "pilot" and shipped.codes.register.enabled


def test_version1_state_dict_keys_are_renamed() -> None:
    payload = read_checkpoint(V1 / "pattern_lean.pt")
    keys = payload["state_dict"]
    assert any("thumbnail." in k for k in keys) and not any("carrier." in k for k in keys)


@pytest.mark.parametrize(
    ("v1", "expected"),
    [
        ({}, {"mirror": "none", "legacy": {"flip_head": True, "texture_weighting": 0.0, "reveal": {}}}),
        ({"flip_sync": True, "carrier": True}, {"mirror": "pattern", "thumbnail_code": True}),
        (
            {"flip_sync": True, "mirror_pilot": True, "carrier": True, "fine_gain": 0.06},
            {"mirror": "pilot", "residual_gain": 0.06},
        ),
        ({"flip_sync": False, "flip_head": False}, {"mirror": "none", "thumbnail_code": False}),
    ],
)
def test_version1_mirror_and_code_fields(v1: dict, expected: dict) -> None:
    """Files from before the mirror pattern had the flip head only; files from before the carrier had none."""
    got = config_from_dict(v1)
    for key, value in expected.items():
        want = got.with_overrides(**{key: value})  # the expected value, put where its short name points
        assert got == want, key


def test_version2_files_get_every_field_written_out() -> None:
    """The analog K = 1 file (the default before the digital layer) says version 2 but predates three fields (the
    detail count, the code order and the base layout): the migration writes them out with the values its code used,
    not whatever today's defaults say."""
    raw = torch.load(shipped_path("k1-analog"), map_location="cpu", weights_only=True)["config"]
    assert raw["version"] == 2 and not {"detail_secrets", "code_last", "base_layout"} & set(raw)
    migrated = migrate_config(raw)
    assert migrated["version"] == CONFIG_VERSION
    assert sorted(_leaf_paths(migrated)) == sorted(field_paths(ModelConfig))
    t = migrated["codes"]["thumbnail"]
    assert (t["detail_secrets"], t["code_last"], t["base_layout"]) == (1, False, "low")
    with pytest.raises(ValueError, match=r"without codes\.residual\.gain"):  # today's reader takes no gap for a default
        ModelConfig.from_dict({**migrated, "codes": {**migrated["codes"], "residual": {}}})


def test_version2_state_dict_keys_move_with_the_parts() -> None:
    """The thumbnail code's maps and the legacy flip head are parts of their own since version 3."""
    raw = torch.load(V1 / "legacy_flip_head.pt", map_location="cpu", weights_only=True)
    old_keys = set(raw["state_dict"])
    keys = set(read_checkpoint(V1 / "legacy_flip_head.pt")["state_dict"])
    assert any(k.startswith("revealer.flip.") for k in old_keys)
    assert any(k.startswith("flip_head.") for k in keys) and not any(k.startswith("revealer.flip.") for k in keys)
    shipped = set(read_checkpoint(None)["state_dict"])
    assert any(k.startswith("thumbnail.writer.") for k in shipped) and any(
        k.startswith("thumbnail.reader.") for k in shipped
    )
    assert not any(".thumbnail." in k for k in shipped)


def test_saving_writes_the_current_version_and_round_trips(tmp_path: Path) -> None:
    model = load_model(V1 / "legacy_texture_pattern.pt")
    path = save_checkpoint(model, tmp_path / "v3.pt")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["config"]["version"] == CONFIG_VERSION
    again = load_model(path)
    assert again.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_a_config_newer_than_the_code_is_refused() -> None:
    with pytest.raises(ValueError, match="newer"):
        migrate_config({"version": 99})
