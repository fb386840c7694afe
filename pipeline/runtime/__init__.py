"""Runtime backends: one ``Engine`` interface (see ``base.py``) implemented by torch, ONNX Runtime, OpenVINO and
TensorRT. ``load_engine`` is the one entry point the jobs use.
"""

from __future__ import annotations

from pipeline.runtime.base import Engine, EngineInfo, TorchEngine


def load_engine(
    backend: str = "auto",
    checkpoint: str | None = None,
    size: int = 256,
    device: str | None = None,
    precision: str | None = None,
    engines_dir: str | None = "engines",
) -> Engine:
    """Load the embed + reveal engine for ``checkpoint`` (None = shipped default) at image size ``size``.

    Only the torch backend exists so far; "auto" resolves to it.
    """
    from pipeline.model.checkpoint import default_checkpoint_path, file_sha256, load_model

    if backend not in ("auto", "torch"):
        raise ValueError(f"backend {backend!r} is not available yet")
    path = checkpoint or default_checkpoint_path()
    model = load_model(path)
    return TorchEngine(model, size, file_sha256(path), device or "cpu", precision or "fp32")


__all__ = ["Engine", "EngineInfo", "TorchEngine", "load_engine"]
