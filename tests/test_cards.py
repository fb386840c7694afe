"""The shipped models' cards (``NAME.json`` beside ``NAME.pt`` in ``pipeline/weights/``): what they say matches the
weights beside them, and ``load_model`` and ``model-info`` go through them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.model import get_config, load_model
from pipeline.model.card import CARD_FORMAT, card_path
from pipeline.model.checkpoint import SHIPPED, CheckpointError, file_sha256, read_checkpoint, shipped_path
from pipeline.model.config import ModelConfig


def _card(name: str) -> dict:
    return json.loads(card_path(shipped_path(name)).read_text())


@pytest.mark.parametrize("name", list(SHIPPED))
def test_each_card_matches_its_weights(name: str) -> None:
    card, path = _card(name), shipped_path(name)
    assert card["format"] == CARD_FORMAT and card["name"] == name and card["file"] == path.name
    assert card["sha256"] == file_sha256(path)
    payload = read_checkpoint(path)
    config = ModelConfig.from_dict(card["config"])
    assert config == ModelConfig.from_dict(payload["config"]) and card["num_secrets"] == config.num_secrets
    assert get_config(card["preset"], **card["overrides"]) == config  # which preset, plus which overrides
    assert card["detection"] == payload["meta"]["detection"]  # the calibrated threshold and its facts
    held_out = card["held_out"]
    family = " --family" if load_model(name).digital is not None else ""  # the digital layer's are measured wider
    assert held_out["command"] == f"python -m pipeline validate --data PHOTOS --checkpoint {name}{family} --json"
    assert {"psnr_cover", "ssim_cover", "psnr_secret", "margin", "images"} <= set(held_out["figures"])


@pytest.mark.parametrize("name", list(SHIPPED))
def test_load_model_goes_through_the_card(name: str) -> None:
    model = load_model(name)
    assert model.card == _card(name) and model.model_name == name
    assert model.checkpoint_sha256 == _card(name)["sha256"]
    assert model.detect_threshold == _card(name)["detection"]["threshold"]


def test_weights_that_are_not_their_cards_are_refused(tmp_path: Path) -> None:
    path = shutil.copy(shipped_path("k1"), tmp_path / "sris_fast.pt")
    card = {**_card("k1"), "sha256": "0" * 64}  # the card of other weights
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not match its model card"):
        load_model(path)
    card_path(path).write_text(json.dumps(_card("k1")))
    assert load_model(path).model_name == "k1"  # the same bytes as the shipped file: its card holds


def test_model_info_prints_the_cards_figures() -> None:
    res = CliRunner().invoke(main, ["model-info", "--config", "tiny"])
    assert res.exit_code == 0, res.output
    assert "validate --data PHOTOS --checkpoint NAME --json" in res.output
    for name in SHIPPED:
        fig = _card(name)["held_out"]["figures"]
        line = next(row for row in res.output.splitlines() if row.split()[:2] == [name, str(fig["images"])])
        assert f"{fig['psnr_cover']:.2f}" in line and f"{fig['psnr_secret']:.2f}" in line
    listed = json.loads(CliRunner().invoke(main, ["model-info", "--config", "tiny", "--json"]).output)["shipped"]
    assert [r["held_out"] for r in listed] == [_card(n)["held_out"]["figures"] for n in SHIPPED]
