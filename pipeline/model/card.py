"""Model cards: a small JSON file beside each shipped model's weights (``pipeline/weights/sris_fast.json`` beside
``sris_fast.pt``) that says what the file is, as data.

A card holds the shipped name and file, K, the sha256 of the weights, the config (and which preset plus which
overrides it is), the detection threshold with its calibration facts (as the checkpoint's metadata has them), and
the held-out figures with the exact command that measured them (``PHOTOS`` stands for the photo folder). ``load_model``
reads the card of a checkpoint that has one and refuses weights whose sha256 differs from the card's;
``python -m pipeline model-info`` prints the cards' figures.

Write or refresh a card after measuring (the weights' sha256, config and detection come from the file itself)::

    python -m pipeline validate --data PHOTOS --checkpoint k2 --json > held_out.json
    python -m pipeline model-info --write-card k2 --held-out held_out.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CARD_FORMAT = "sris-pipeline/model-card-1"
# The command that measures a card's held-out figures (the default held-out split of the photos named by --data).
HELD_OUT_COMMAND = "python -m pipeline validate --data PHOTOS --checkpoint {name} --json"
# The preset each shipped model's network is; the card lists what the model overrides.
BASE_PRESET = "fast"


class CardError(ValueError):
    """A model card is unreadable, or does not match the weights beside it."""


def card_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where the card of a checkpoint file lives: beside it, ``NAME.json`` for ``NAME.pt``."""
    return Path(checkpoint).with_suffix(".json")


def read_card(checkpoint: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The card beside ``checkpoint``, or None where there is none (a JSON file of another kind is not a card)."""
    path = card_path(checkpoint)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CardError(f"cannot read the model card {path}: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        return None
    return card


def check_card(card: dict[str, Any], checkpoint: str | os.PathLike[str], sha256: str) -> None:
    """Refuse weights whose sha256 is not the one their card names (the file was replaced, or the card is stale)."""
    if card.get("sha256") != sha256:
        raise CardError(
            f"{checkpoint} does not match its model card {card_path(checkpoint)}: the weights' sha256 is "
            f"{sha256[:12]}..., the card names {str(card.get('sha256'))[:12]}... (reinstall the package, or rewrite "
            f"the card with python -m pipeline.model.card)"
        )


def overrides_of(config: Any, preset: str = BASE_PRESET) -> dict[str, Any]:
    """The short-name overrides (``config.SHORT_NAMES``) that turn ``preset`` into ``config``, JSON-ready."""
    from pipeline.model.config import SHORT_NAMES, get_config

    base = get_config(preset)
    out = {}
    for name, path in SHORT_NAMES.items():
        ours, theirs = _get(config, path), _get(base, path)
        if ours != theirs:
            out[name] = _plain(ours)
    return out


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _plain(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value):
        return asdict(value)
    return list(value) if isinstance(value, tuple) else value


def build_card(
    name: str, file: str, sha256: str, payload: dict[str, Any], held_out: dict[str, Any], command: str | None = None
) -> dict[str, Any]:
    """The card of shipped model ``name``: its ``file``, the file's ``sha256``, its ``payload`` as
    ``read_checkpoint`` gives it (config, metadata) and its held-out figures (``validate --json``'s output, every
    figure as measured); ``command``: the one that measured them, where it is not ``HELD_OUT_COMMAND``."""
    from pipeline.model.config import ModelConfig

    config = ModelConfig.from_dict(payload["config"])
    return {
        "format": CARD_FORMAT,
        "name": name,
        "file": file,
        "sha256": sha256,
        "num_secrets": config.num_secrets,
        "preset": BASE_PRESET,
        "overrides": overrides_of(config),
        "config": payload["config"],
        "detection": (payload.get("meta") or {}).get("detection"),
        "held_out": {"command": command or HELD_OUT_COMMAND.format(name=name), "figures": held_out},
    }
