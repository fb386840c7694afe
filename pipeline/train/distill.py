"""Give a trained SRIS-Net a light score head (``LightScore``) distilled from its discriminator's score map.

Every other weight stays bit-identical: the head learns, by L1 on the sigmoid maps, to predict what the
discriminator's score head says, from the cover folded by 4. Models trained with ``light_score`` from the start
distil it inside the training loop; this is for checkpoints trained before it existed (the shipped one included).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from pipeline.core.photos import validation_pairs
from pipeline.io.photos import load_photos
from pipeline.model.sris.discriminator import LightScore
from pipeline.train.data import CropSampler


@dataclass(frozen=True)
class DistillConfig:
    """Distillation schedule: Adam at ``lr`` with cosine decay, ``batch`` random crops of ``crop`` px per step
    (random windows between ``crop`` px and the photo's shorter side, as in training, so every scale is seen)."""

    data: str
    steps: int = 2500
    batch: int = 16
    crop: int = 128
    lr: float = 5e-3
    seed: int = 0
    val_fraction: float = 0.2
    val_size: int = 256


def _l1(light: LightScore, model: torch.nn.Module, covers: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        target = model.discriminator.score_map(covers)
    return (light.score_map(covers) - target).abs().mean()


def distill_light_score(model: torch.nn.Module, dc: DistillConfig, progress: bool = True) -> dict[str, float]:
    """Add ``model.light_score`` (config ``light_score=True``) and distil it; returns the fit, in score units.

    Returns: ``val_l1`` (mean |light - discriminator| on the held-out photos at ``val_size``), ``val_gain_l1`` (the
    same on the embedding gain the score map sets), ``train_l1`` (last 100 steps), ``minutes``.
    """
    cfg = model.config
    if cfg.network.arch != "sris" or not cfg.ablation.score_map:
        raise ValueError("only SRIS-Net with its score map has a score head to distil")
    torch.manual_seed(dc.seed)
    train_imgs, val_imgs, _, _ = load_photos(dc.data, cfg.channels, dc.val_fraction)
    sampler = CropSampler(train_imgs, dc.crop, seed=dc.seed)
    light = LightScore(cfg.channels)
    model.eval().requires_grad_(False)
    opt = torch.optim.Adam(light.parameters(), lr=dc.lr)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(dc.steps), desc="distil score head", unit="step", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = dc.lr * 0.5 * (1 + math.cos(math.pi * step / dc.steps))
        loss = _l1(light, model, sampler.batch(dc.batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(l1=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    light.eval().requires_grad_(False)
    model.light_score = light
    model.config = cfg.with_overrides(light_score=True)
    res = {"train_l1": sum(losses[-100:]) / len(losses[-100:]), "minutes": (time.perf_counter() - t0) / 60}
    if val_imgs:
        covers, _ = validation_pairs(val_imgs, dc.val_size)
        with torch.no_grad():
            res["val_l1"] = _l1(light, model, covers).item()
            res["val_gain_l1"] = res["val_l1"] * (1 - cfg.network.score_floor)
    return res
