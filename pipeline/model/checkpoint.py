"""Model checkpoints: a config plus weights in one file, loadable with nothing else.

Format (a ``torch.save`` dict, read back with ``weights_only=True`` so loading never runs pickled code):
``{"format": "sris-pipeline/model-1", "config": ModelConfig.to_dict(), "state_dict": {...}, "meta": {...}}``.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from pipeline.model.config import ModelConfig

FORMAT = "sris-pipeline/model-1"
DEFAULT_WEIGHTS = "sris_fast.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not of this project's format."""


def default_checkpoint_path() -> Path:
    """The checkpoint shipped inside the package (``pipeline/weights/sris_fast.pt``)."""
    return Path(str(resources.files("pipeline") / "weights" / DEFAULT_WEIGHTS))


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    model: torch.nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None, half: bool = False
) -> Path:
    """Write ``model`` (config + weights) atomically; ``half`` stores float weights as fp16 (half the size)."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()
    }
    payload = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state, "meta": meta or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an sris-pipeline model checkpoint (format {FORMAT!r} expected)")
    return payload


def load_model(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a trained model for inference (eval mode, fp32). ``None`` loads the shipped default model."""
    from pipeline.model import build_model

    path = default_checkpoint_path() if path is None else Path(path)
    payload = read_checkpoint(path)
    model = build_model(ModelConfig.from_dict(payload["config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    model.load_state_dict(state)
    model.checkpoint_path = str(path)
    model.checkpoint_meta = payload.get("meta", {})
    return model.to(device).eval()
