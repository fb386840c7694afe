"""What ``python -m pipeline model-info`` prints: the shipped model files with their K, and the parameter and FLOP
counts of the presets."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.model import build_model, get_config
from pipeline.model.checkpoint import SHIPPED, CheckpointError, file_sha256, read_checkpoint, shipped_path
from pipeline.model.config import ModelConfig


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e9


def describe(preset: str, size: int = 256, **overrides) -> dict:
    """Parameter counts per part and GFLOPs of embed and reveal at ``size`` of a preset (fields overridden)."""
    cfg = get_config(preset, **overrides)
    m = build_model(cfg).eval()

    def count(*parts: torch.nn.Module | None) -> int:
        return sum(p.numel() for part in parts if part is not None for p in part.parameters())

    writer, reader = (m.thumbnail.writer, m.thumbnail.reader) if m.thumbnail is not None else (None, None)
    cover = torch.rand(1, cfg.channels, size, size)
    secrets = torch.rand(1, cfg.num_secrets * cfg.channels, size, size)
    stego = m.embed(cover, secrets).detach()
    return {
        "preset": preset,
        "params": count(m),
        "params_embed": count(m.embedder, writer, m.light_score),
        "params_reveal": count(m.revealer, reader, m.flip_head),
        "params_discriminator": count(m.discriminator),
        "gflops_embed": _flops(lambda: m.embed(cover, secrets)),
        "gflops_reveal": _flops(lambda: m.reveal(stego)),
        "size": size,
    }


def shipped_models() -> list[dict]:
    """One row per shipped model name (``checkpoint.SHIPPED``): its file, K, preset-level facts and sha256 prefix;
    ``installed`` False (and the reason in ``note``) where the file is missing or unreadable."""
    rows = []
    for name, filename in SHIPPED.items():
        path = shipped_path(name)
        row = {"name": name, "file": f"pipeline/weights/{filename}", "installed": False, "note": ""}
        try:
            payload = read_checkpoint(path)
        except CheckpointError as exc:
            row["note"] = "not installed" if not path.is_file() else str(exc)
            rows.append(row)
            continue
        cfg = ModelConfig.from_dict(payload["config"])
        state = payload["state_dict"]
        row.update(
            installed=True,
            num_secrets=cfg.num_secrets,
            channels=cfg.channels,
            params=sum(v.numel() for v in state.values() if v.is_floating_point()),
            sha256=file_sha256(path)[:12],
            detection_threshold=(payload.get("meta", {}).get("detection") or {}).get("threshold"),
        )
        rows.append(row)
    return rows
