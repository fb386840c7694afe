"""The models shipped inside the package (``pipeline/weights/``), by name, and what a ``--checkpoint`` names: data and
paths, without torch (``checkpoint.py`` loads the weights)."""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

DEFAULT_WEIGHTS = "sris_fast.pt"
# The models shipped inside the package, by name: K secrets per cover ("k1" is the default model).
SHIPPED = {
    "k1": DEFAULT_WEIGHTS,
    "k2": "sris_fast_k2.pt",
    "k4": "sris_fast_k4.pt",
    "k1-analog": "sris_fast_analog.pt",
}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not of this project's format."""


def shipped_path(name: str) -> Path:
    """The file of a shipped model by name (``SHIPPED``), in ``pipeline/weights/``."""
    return Path(str(resources.files("pipeline") / "weights" / SHIPPED[name]))


def default_checkpoint_path() -> Path:
    """The checkpoint shipped inside the package (``pipeline/weights/sris_fast.pt``)."""
    return shipped_path("k1")


def resolve_checkpoint(spec: str | os.PathLike[str] | None) -> Path:
    """What a ``--checkpoint`` names: ``None`` the default model, a shipped model's name (``k1``, ``k2``, ``k4``,
    unless a file of that name exists here) its file in the package, anything else a path."""
    if spec is None:
        return default_checkpoint_path()
    if isinstance(spec, str) and spec in SHIPPED and not Path(spec).exists():
        return shipped_path(spec)
    return Path(spec)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
