"""One model's evaluation: what ``run`` measures and ``report`` writes up."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelResult:
    label: str
    stegos: torch.Tensor  # (N, C, H, W) uint8
    recovered: torch.Tensor  # (N, K*C, H, W) uint8, clean
    secrets: torch.Tensor  # (N, K*C, H, W) uint8
    covers: torch.Tensor  # (N, C, H, W) uint8
    names: list[str]
    quality: list[dict]
    robustness: list[dict]
    seconds: float
