"""GLEM: the global-local embedding module used at every level of the progressive embedding."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.sris.dmsubnet import MSIB


class GlobalContext(nn.Module):
    """Whole-image context: (B, C, H, W) -> (B, C, 1, 1).

    Attention pooling (a softmax over all pixels of a 1x1-conv score) summarises the image in one vector, which a
    bottleneck MLP with LayerNorm transforms. It sees every pixel whatever the image size, so a net trained on
    128 px crops uses the same context at 256 px or more.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.attn = nn.Conv2d(channels, 1, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weights = self.attn(x).flatten(2).softmax(dim=-1)  # (B, 1, HW)
        ctx = torch.bmm(x.flatten(2), weights.transpose(1, 2)).reshape(b, c)  # (B, C)
        ctx = self.fc2(self.act(self.norm(self.fc1(ctx))))
        return ctx.reshape(b, c, 1, 1)


class GLEM(nn.Module):
    """Global-local embedding module: (B, in_channels, H, W) -> (B, channels, H, W).

    The input (the level's cover band, secret band, the coarser level's result and the score map, concatenated) is
    projected to ``channels``; a local branch (MSIB) models detail, a global branch adds whole-image context, and a
    per-pixel, per-channel sigmoid gate fuses the two adaptively. ``use_global=False`` is the ablation without the
    global branch.
    """

    def __init__(
        self, in_channels: int, channels: int, dilations: tuple[int, ...] = (1, 2, 3), use_global: bool = True
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, 1)
        self.local = MSIB(channels, dilations)
        self.use_global = use_global
        if use_global:
            self.context = GlobalContext(channels)
            self.gate = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        local = self.local(x)
        if not self.use_global:
            return local
        glob = x + self.context(x)
        gate = torch.sigmoid(self.gate(torch.cat([local, glob], dim=1)))
        return gate * local + (1 - gate) * glob
