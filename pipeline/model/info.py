"""What ``python -m pipeline model-info`` prints: the shipped model files with their K and their cards' figures, and
the parameter and FLOP counts of the presets."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.model import build_model, get_config
from pipeline.model.card import build_card, card_path
from pipeline.model.checkpoint import (
    SHIPPED,
    CheckpointError,
    file_sha256,
    model_card,
    read_checkpoint,
    shipped_path,
)
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
    stego = m.embed_analog(cover, secrets).detach()
    return {
        "preset": preset,
        "params": count(m),
        "params_embed": count(m.embedder, writer, m.light_score),
        "params_reveal": count(m.revealer, reader, m.flip_head),
        "params_discriminator": count(m.discriminator),
        "gflops_embed": _flops(lambda: m.embed_analog(cover, secrets)),
        "gflops_reveal": _flops(lambda: m.reveal_analog(stego)),
        "size": size,
    }


# The held-out figures ``model-info`` prints from each card (keys of ``validate --json``), with their headings.
CARD_FIGURES = {
    "psnr_cover": "cover dB",
    "ssim_cover": "SSIM",
    "psnr_secret": "secret dB",
    "psnr_secret_worst": "attacked dB",
    "margin": "margin",
    "published_margin": "published",
}


def shipped_models() -> list[dict]:
    """One row per shipped model name (``checkpoint.SHIPPED``): its file, K, sha256 prefix and what its card says
    (detection threshold, held-out figures and the command that measured them); ``installed`` False (and the reason
    in ``note``) where the file is missing, unreadable or not the one its card names."""
    rows = []
    for name, filename in SHIPPED.items():
        path = shipped_path(name)
        row = {"name": name, "file": f"pipeline/weights/{filename}", "installed": False, "note": ""}
        try:
            sha256 = file_sha256(path) if path.is_file() else ""
            card = model_card(path, sha256) if path.is_file() else None
            payload = read_checkpoint(path)
        except CheckpointError as exc:
            row["note"] = "not installed" if not path.is_file() else str(exc)
            rows.append(row)
            continue
        cfg = ModelConfig.from_dict(payload["config"])
        state = payload["state_dict"]
        held_out = (card or {}).get("held_out") or {}
        row.update(
            installed=True,
            num_secrets=cfg.num_secrets,
            channels=cfg.channels,
            params=sum(v.numel() for v in state.values() if v.is_floating_point()),
            sha256=sha256[:12],
            detection_threshold=(payload.get("meta", {}).get("detection") or {}).get("threshold"),
            card=None if card is None else f"pipeline/weights/{card_path(path).name}",
            held_out=held_out.get("figures"),
            held_out_command=held_out.get("command"),
        )
        rows.append(row)
    return rows


def write_card(name: str, held_out: dict, command: str | None = None) -> Path:
    """Write the card of shipped model ``name`` beside its weights from the file and its held-out figures
    (``validate --json``'s output, measured by ``command`` when not the card's default); returns the card's path."""
    path = shipped_path(name)
    card = build_card(name, SHIPPED[name], file_sha256(path), read_checkpoint(path), held_out, command)
    out = card_path(path)
    out.write_text(json.dumps(card, indent=1) + "\n")
    return out
