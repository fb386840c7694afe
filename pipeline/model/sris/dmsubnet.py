"""DMSubNet: the dual multi-scale aggregation sub-network, with its parts MSIB and SFM.

"Dual" multi-scale aggregation, as we build it: (1) inside every block, MSIB branches with different dilations see
different receptive fields at once; (2) across blocks, a hierarchical encoder/decoder (strided down-sampling, then
up-sampling) aggregates scales. Where the decoder meets the encoder's (shallow) features, SFM selects between them
per channel and per pixel instead of adding them.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


class MSIB(nn.Module):
    """Multi-scale intra-block: (B, C, H, W) -> (B, C, H, W).

    The channels are split into one share per dilation; each share gets a 3x3 conv at its dilation (receptive fields
    3, 5, 7 for dilations 1, 2, 3), the shares are concatenated and mixed by a 1x1 conv, and added to the input.
    Splitting keeps the cost at about 4 C^2 multiply-adds per pixel instead of 9 C^2 for one dense 3x3 conv.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()
        share = channels // len(dilations)
        if share * len(dilations) != channels:
            raise ValueError(f"MSIB channels {channels} not divisible by {len(dilations)} branches")
        self.share = share
        self.branches = nn.ModuleList(nn.Conv2d(share, share, 3, padding=d, dilation=d) for d in dilations)
        self.fuse = nn.Conv2d(channels, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.share, dim=1)
        y = torch.cat([self.act(b(p)) for b, p in zip(self.branches, parts, strict=True)], dim=1)
        return x + self.fuse(y)


class SFM(nn.Module):
    """Selective fusion module: fuse shallow and deep features (both (B, C, H, W)) -> (B, C, H, W).

    A softmax over the two sources gives each channel at each pixel a convex combination of shallow and deep: the
    channel part of the logits comes from globally pooled statistics (as in selective-kernel networks), the spatial
    part from a 1x1 conv over both sources that gives one logit per source and pixel (cheap at full size).
    With ``enabled=False`` it is the plain addition the paper replaces (ablation).
    """

    def __init__(self, channels: int, reduction: int = 4, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.channels = channels
        if enabled:
            hidden = max(channels // reduction, 8)
            self.squeeze = nn.Conv2d(channels, hidden, 1)
            self.excite = nn.Conv2d(hidden, 2 * channels, 1)
            self.spatial = nn.Conv2d(2 * channels, 2, 1)
            self.act = nn.SiLU()

    def forward(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return shallow + deep
        b, c, h, w = deep.shape
        pooled = (shallow + deep).mean(dim=(2, 3), keepdim=True)
        channel = self.excite(self.act(self.squeeze(pooled))).reshape(b, 2, c, 1, 1)
        spatial = self.spatial(torch.cat([shallow, deep], dim=1)).reshape(b, 2, 1, h, w)
        weights = (channel + spatial).softmax(dim=1)
        return weights[:, 0] * shallow + weights[:, 1] * deep


class DMSubNet(nn.Module):
    """(B, widths[0], H, W) -> (B, widths[0], H, W), H and W multiples of 2**(len(widths)-1).

    Encoder: MSIBs at each scale, a strided 3x3 conv between scales. Decoder: bilinear up-sampling and a 1x1 conv,
    SFM with the encoder feature of the same scale, MSIBs. A final SFM fuses the sub-network's input (the shallow
    feature) with the decoded (deep) feature.
    """

    def __init__(
        self, widths: tuple[int, ...], blocks: int = 1, dilations: tuple[int, ...] = (1, 2, 3), sfm: bool = True
    ) -> None:
        super().__init__()
        self.enc = nn.ModuleList(nn.Sequential(*[MSIB(w, dilations) for _ in range(blocks)]) for w in widths)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in pairwise(widths))
        self.up = nn.ModuleList(nn.Conv2d(b, a, 1) for a, b in pairwise(widths))
        self.fuse = nn.ModuleList(SFM(w, enabled=sfm) for w in widths[:-1])
        self.dec = nn.ModuleList(nn.Sequential(*[MSIB(w, dilations) for _ in range(blocks)]) for w in widths[:-1])
        self.out_fuse = SFM(widths[0], enabled=sfm)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, shallow: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: the features to refine; ``shallow``: the features SFM fuses with the result (default ``x``)."""
        skips = []
        h = x
        for i, enc in enumerate(self.enc):
            h = enc(h)
            if i < len(self.down):
                skips.append(h)
                h = self.act(self.down[i](h))
        for i in reversed(range(len(self.up))):
            skip = skips[i]
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = self.dec[i](self.fuse[i](skip, self.up[i](h)))
        return self.out_fuse(x if shallow is None else shallow, h)
