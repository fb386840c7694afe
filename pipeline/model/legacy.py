"""What only old checkpoints do: they load and give their outputs, and nothing new is trained with it.

- ``FlipHead``: the first models' learned mirror classifier (superseded by the mirror pattern, then the pilot); the
  hiding model runs it before its revealer (SRIS-Net and the baselines alike).
- ``texture_weight``: an experiment that scaled the thumbnail code per block by the cover's texture.
- ``reveal_config``: an experiment with a revealer wider than the embedder.

The fields that switch them on live in ``ModelConfig.legacy`` (``LegacyConfig``), filled by the checkpoint migration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.config import ModelConfig
from pipeline.model.sris.discriminator import texture_target


class FlipHead(nn.Module):
    """(B, C, H, W) -> (B,) logit that the image was mirrored left-right after embedding.

    Reveal un-mirrors by the hard decision ``logit > 0``; training teacher-forced it with the true flag.
    """

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.fc = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x - 0.5).mean(dim=(2, 3))).squeeze(1)

    def unflip(self, stego: torch.Tensor, flipped: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-mirror the images of ``stego`` (B, C, N, N) the head calls mirrored; returns them and its logit (B,).
        ``flipped`` (B,) teacher-forces the decision (training); at inference the head decides, hard."""
        logit = self(stego)
        decision = (logit > 0).to(stego.dtype) if flipped is None else flipped.to(stego.dtype)
        p = decision.reshape(-1, 1, 1, 1)
        return p * stego.flip(-1) + (1 - p) * stego, logit


def texture_weight(image: torch.Tensor, a: float) -> torch.Tensor | None:
    """(B, C, N, N) -> (B, 1, N, N): ``(1 - a) + a * texture`` (smoothed over 15x15), at unit RMS per image; None
    for ``a <= 0``. Embed scaled the thumbnail code by it from the cover; reveal divides the same map, computed from
    the stego, back out."""
    if a <= 0:
        return None
    t = F.avg_pool2d(texture_target(image), 15, stride=1, padding=7, count_include_pad=False)
    w = (1 - a) + a * t
    return w / w.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()


def reveal_config(cfg: ModelConfig) -> ModelConfig:
    """The revealer's own config: ``cfg`` with ``cfg.legacy.reveal`` applied (a revealer wider or deeper than the
    embedder, e.g. ``{"width": 48, "level_widths": [48, 96, 96, 96], "dms_widths": [48, 96]}``, short names of the
    network section)."""
    over = cfg.legacy.reveal
    return cfg.with_overrides(**over) if over else cfg
