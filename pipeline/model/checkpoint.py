"""Model checkpoints: a config plus weights in one file, loadable with nothing else.

Format (a ``torch.save`` dict, read back with ``weights_only=True`` so loading never runs pickled code):
``{"format": "sris-pipeline/model-2", "config": ModelConfig.to_dict(), "state_dict": {...}, "meta": {...}}``.
Files of earlier formats are migrated on reading (``pipeline/model/migrate.py``); the file itself is not rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pipeline.core.files import atomic_path
from pipeline.model.card import CardError, check_card, read_card
from pipeline.model.config import ModelConfig
from pipeline.model.migrate import migrate
from pipeline.model.shipped import (  # noqa: F401 (part of this module's names)
    DEFAULT_WEIGHTS,
    SHIPPED,
    CheckpointError,
    default_checkpoint_path,
    file_sha256,
    resolve_checkpoint,
    shipped_path,
)

FORMAT = "sris-pipeline/model-2"
READABLE_FORMATS = ("sris-pipeline/model-1", FORMAT)  # older ones are migrated on reading


def save_checkpoint(
    model: torch.nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None, half: bool = False
) -> Path:
    """Write ``model`` (config + weights) atomically; ``half`` stores float weights as fp16 (half the size)."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()
    }
    payload = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state, "meta": meta or {}}
    return _write(payload, path)


def _write(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a reader never sees half a checkpoint."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def update_meta(path: str | os.PathLike[str], **entries: Any) -> Path:
    """Set ``entries`` in the metadata of the checkpoint file at ``path`` in place (atomically); the weights, the
    config and the format stay as they are, byte for byte once loaded (say, a detection threshold calibrated later)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    payload["meta"] = {**(payload.get("meta") or {}), **entries}
    return _write(payload, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint at ``path`` (or a shipped model's name, ``resolve_checkpoint``), migrated to today's format."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path} is not an sris-pipeline model checkpoint (format {FORMAT!r} expected)")
    try:
        payload["config"], payload["state_dict"] = migrate(payload["config"], payload["state_dict"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    payload["format"] = FORMAT
    return payload


def _build(config: dict[str, Any], state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The model of a checkpoint's config with ``state`` loaded, float weights as fp32, in eval mode.

    Built outside inference mode whatever the caller's mode: weights made inside ``torch.inference_mode()`` are
    inference tensors, and a later reveal outside it fails on them ("Inference tensors cannot be saved for
    backward")."""
    from pipeline.model.compose import build_model

    with torch.inference_mode(False):
        model = build_model(ModelConfig.from_dict(config))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


def model_card(path: str | os.PathLike[str] | None, sha256: str) -> dict[str, Any] | None:
    """The model card beside the checkpoint (``pipeline/model/card.py``; the shipped models have one), checked
    against the weights' ``sha256``; None where the checkpoint has no card."""
    path = resolve_checkpoint(path)
    try:
        card = read_card(path)
        if card is not None:
            check_card(card, path, sha256)
    except CardError as exc:
        raise CheckpointError(str(exc)) from exc
    return card


def load_model(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a trained model for inference (eval mode, fp32): ``None`` the shipped default model, a shipped model's
    name (``"k2"``: two secrets per cover; ``SHIPPED``) or a checkpoint file.

    The file is read once and hashed once. A shipped model goes through its card (``NAME.json`` beside the weights):
    weights whose sha256 is not the card's are refused. The model carries where it came from: ``checkpoint_path``,
    ``checkpoint_sha256``, ``checkpoint_meta``, ``card`` (or None) and ``model_name`` (the shipped name, else the
    file's stem)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    sha256 = file_sha256(path)
    card = model_card(path, sha256)
    payload = read_checkpoint(path)
    model = _build(payload["config"], payload["state_dict"])
    model.checkpoint_path = str(path)
    model.checkpoint_sha256 = sha256
    model.checkpoint_meta = payload.get("meta", {})
    model.card = card
    model.model_name = card["name"] if card else path.stem
    return model.to(device).eval()


def with_registration(model: torch.nn.Module) -> torch.nn.Module:
    """The same trained model with ``config.register`` on (reveal first moves a shifted or mirrored stego back into
    register, ``pipeline/model/codes/register.py``); the weights are shared, nothing is retrained."""
    if not model.config.coded:
        raise ValueError("registration reads the thumbnail code's pilot: this model has no thumbnail code")
    out = _build(model.config.with_overrides(register=True).to_dict(), model.state_dict())
    for name in ("checkpoint_path", "checkpoint_sha256", "checkpoint_meta", "card", "model_name"):
        setattr(out, name, getattr(model, name, None))
    return out


def average_checkpoints(
    paths: list[str | os.PathLike[str]], weights: list[float] | None = None, out: str | os.PathLike[str] | None = None
) -> torch.nn.Module:
    """Weighted mean of the float weights of checkpoints of one architecture (a "model soup").

    For fine-tunes of one start that ended at different points of a trade-off (here: cover SSIM against the secret
    after noise), the mean lands between them, so a weight picks a point no single run ended at. Integer buffers
    are taken from the first file. Returns the averaged model (fp32, eval mode); ``out`` also writes it, fp16, with
    the sources and weights in its meta.
    """
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("one non-negative weight per checkpoint, not all zero")
    payloads = [read_checkpoint(p) for p in paths]
    if any(p["config"] != payloads[0]["config"] for p in payloads[1:]):
        raise CheckpointError("checkpoints of different configurations cannot be averaged")
    states = [p["state_dict"] for p in payloads]
    total = sum(weights)
    mean = {
        k: sum(w * s[k].float() for w, s in zip(weights, states, strict=True)) / total if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    model = _build(payloads[0]["config"], mean)
    if out is not None:
        meta = {"averaged": [{"path": str(p), "weight": w} for p, w in zip(paths, weights, strict=True)]}
        save_checkpoint(model, out, meta=meta, half=True)
    return model
