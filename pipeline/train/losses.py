"""Training losses and the constraint weights that balance them.

The secret term is in decibels: ``db_loss(a, b)`` is the mean over images of 10 log10(MSE), i.e. minus the PSNR
up to a constant, so its pull grows as the recovery improves. Cover fidelity and structure are constraints with
targets: the cover term is the MSE normalised by the MSE of the target PSNR (``normalized_mse``), the structure term
1 - SSIM, and each has a weight that grows while the batch is below its target and shrinks while above (dual ascent
in log space), so the secret gets all the capacity that imperceptibility leaves.

Why the cover term is not in decibels too: the gradient of log(MSE) grows as 1/MSE, so near a zero residual it
overwhelms every other term and drives the residual to zero (a first run sat at 60 dB cover, 11 dB secret).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.core.metrics import psnr_from_mse, ssim


def db_loss(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-7) -> torch.Tensor:
    """Mean over images of 10 log10(MSE) for [0, 1] images: -PSNR (dB) + constant. Floor 1e-7 = 70 dB."""
    m = ((a.float() - b.float()) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(m + floor)).mean()


def psnr_to_mse(psnr_db: float) -> float:
    """MSE of [0, 1] images at the given PSNR."""
    return 10 ** (-psnr_db / 10)


def normalized_mse(a: torch.Tensor, b: torch.Tensor, psnr_db: float) -> torch.Tensor:
    """MSE of [0, 1] images divided by the MSE at ``psnr_db``: 1.0 exactly at that PSNR."""
    return ((a.float() - b.float()) ** 2).mean() / psnr_to_mse(psnr_db)


def psnr01(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch-mean PSNR (dB) of [0, 1] images in float32, for logging and the constraint updates (MSE floor 1e-10)."""
    m = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return psnr_from_mse(m, 1.0).mean()


def ssim_loss(stego: torch.Tensor, cover: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - mean SSIM, mean SSIM) on the 0-255 scale."""
    s = ssim(stego.float() * 255, cover.float() * 255).mean()
    return 1 - s, s


def guidance_loss(residual: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Score-map guidance: residual magnitude where the score map says a change would show (score near 0).

    Scaled so a residual of 4/255 (about 36 dB) everywhere in a flat image costs 1.
    """
    return (residual.abs().mean(1, keepdim=True) * (1 - score)).mean() * (255 / 4)


def bce(logits: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(target):
        target = torch.full_like(logits, float(target))
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


@dataclass
class Constraint:
    """A loss weight adapted by dual ascent: ``value`` below ``target`` raises the weight.

    ``log_weight += rate * (target - value) * scale``, clamped to [log lo, log hi]. ``scale`` converts the
    constraint's units (1 per dB for PSNR, 100 per SSIM unit) so that the same rate fits both.
    """

    target: float
    rate: float = 0.01
    scale: float = 1.0
    lo: float = 0.1
    hi: float = 100.0
    log_weight: float = 0.0

    @property
    def weight(self) -> float:
        return math.exp(self.log_weight)

    def update(self, value: float) -> None:
        self.log_weight += self.rate * (self.target - value) * self.scale
        self.log_weight = min(max(self.log_weight, math.log(self.lo)), math.log(self.hi))
