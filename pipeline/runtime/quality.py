"""What an int8 engine costs in quality, per model: the record ``int8.json`` beside this module, read by
``resolve_precision`` (OpenVINO's default is int8 only for a model whose int8 figures hold).

A model's int8 figures hold when no PSNR figure of ``validate`` (the quality bar's and the published-image bar's)
measured through its int8 OpenVINO engine is more than ``INT8_BAR_DB`` under the same figure of the fp32 torch model.
``benchmarks/int8_quality.py --data PHOTOS`` measures it with ``validate --backend openvino --precision int8`` and
rewrites the record (``--write``); a model that is not in it never gets int8 by default.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

INT8_BAR_DB = 0.2
RECORD = Path(__file__).with_name("int8.json")
# ``validate --json`` keys that are not figures of an image (margins, spreads, the worst-of summaries repeat others).
NOT_FIGURES = (
    "margin",
    "published_margin",
    "psnr_secret_noise5_se",
    "psnr_secret_worst",
    "psnr_secret_published_worst",
)


def figure_changes(reference: dict[str, Any], measured: dict[str, Any]) -> dict[str, float]:
    """``measured - reference`` (dB) for every PSNR figure of two ``validate --json`` results."""
    keys = [k for k, v in reference.items() if k.startswith("psnr_") and isinstance(v, float) and k not in NOT_FIGURES]
    return {k: float(measured[k]) - float(reference[k]) for k in keys}


def holds(changes: dict[str, float], bar_db: float = INT8_BAR_DB) -> bool:
    """No figure dropped by more than ``bar_db``."""
    return all(v >= -bar_db for v in changes.values())


@functools.cache
def int8_record() -> dict[str, Any]:
    """The record's models by checkpoint sha256 (empty when there is no record)."""
    try:
        return json.loads(RECORD.read_text()).get("models", {})
    except FileNotFoundError:
        return {}


def int8_holds(model_sha256: str) -> bool:
    """The model's int8 figures were measured and hold (``holds``)."""
    return bool(int8_record().get(model_sha256, {}).get("holds", False))
