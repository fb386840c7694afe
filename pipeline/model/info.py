"""Parameter and FLOP counts of the presets (``python -m pipeline model-info``)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.model import build_model, get_config


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e9


def describe(preset: str, size: int = 256) -> dict:
    cfg = get_config(preset)
    m = build_model(cfg).eval()
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    cover = torch.rand(1, cfg.channels, size, size)
    secrets = torch.rand(1, cfg.num_secrets * cfg.channels, size, size)
    stego = m.embed(cover, secrets).detach()
    return {
        "preset": preset,
        "params": count(m),
        "params_embed": count(m.embedder),
        "params_reveal": count(m.revealer),
        "params_discriminator": count(m.discriminator),
        "gflops_embed": _flops(lambda: m.embed(cover, secrets)),
        "gflops_reveal": _flops(lambda: m.reveal(stego)),
        "size": size,
    }
