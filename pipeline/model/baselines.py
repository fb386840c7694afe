"""Baselines: learned networks with SRIS-Net's two paths, so the same hiding model, Trainer, evaluation and engines
run them unchanged (``compose.build_model`` puts them in a ``HidingModel`` in SRIS-Net's place).

- ``hinet``: a HiNet-style invertible network (Jing et al., ICCV 2021): Haar DWT, affine coupling blocks, inverse DWT.
- ``unet``: a plain U-Net encoder/decoder for embedding and another for revealing.

Both give ``embedder(cover, secrets, score) -> residual`` and ``revealer(stego) -> secrets`` (unclamped); the hiding
model adds the same ``DualTaskDiscriminator`` (so the adversarial loss is identical). The score map is SRIS-Net's
contribution and is *not* part of the baselines: their embedder ignores ``score`` and the hiding model gives it ones.
Mirror handling is the hiding model's (the mirror pattern of ``config.codes.mirror``, or a legacy checkpoint's
``FlipHead``), so the comparison is about the trunk.

Fairness choices (named in the model card): both baselines work at the same internal resolution as SRIS-Net of the
same preset (``config.network.stem_stride``: HiNet applies log2(stem_stride) Haar levels, the U-Net folds pixel blocks
the way SRIS-Net's stem does), and their widths derive from ``config.network.width`` so that embed + reveal costs about
SRIS-Net's FLOPs (an invertible net shares its weights between embed and reveal, so it has far fewer parameters; the
counts are in the model card). ``config.network.hinet_blocks`` (default 6) and ``config.network.unet_depth`` (default
3) set the depths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.config import ModelConfig
from pipeline.model.folded import fold, unfold

# HiNet bounds the log-scale of its affine coupling with clamp * (2 sigmoid(.) - 1); it uses clamp = 2.
COUPLING_CLAMP = 2.0
# Output layers start near zero (HiNet zero-initialises them): the stego starts close to the cover. Not exactly zero,
# so every parameter gets a gradient from the first step (a zero last layer blocks the gradient of the layers before).
OUT_INIT_STD = 1e-2

# Orthonormal 2x2 Haar transform on the four pixels of a block, in pixel-unshuffle order (dy, dx) = 00, 01, 10, 11:
# rows are LL, HL (horizontal detail), LH (vertical detail), HH. It is symmetric and its own inverse.
_HAAR = 0.5 * torch.tensor(
    [[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]
)


def _init_out(conv: nn.Conv2d) -> None:
    nn.init.normal_(conv.weight, std=OUT_INIT_STD)
    nn.init.zeros_(conv.bias)


def _check_size(x: torch.Tensor, multiple: int) -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"image size {h}x{w} must be a multiple of {multiple} for this model")


class HaarDWT(nn.Module):
    """Multi-level orthonormal Haar wavelet packet: (B, C, H, W) -> (B, C * 4**levels, H / 2**levels, W / 2**levels).

    One level is pixel-unshuffle followed by a fixed 4x4 orthonormal mixing of each 2x2 block (LL, HL, LH, HH per
    channel); further levels transform every sub-band again (HiNet uses one level). ``inverse`` is exact up to float
    rounding. H and W must be multiples of 2**levels.
    """

    def __init__(self, levels: int) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"the Haar transform needs at least one level, got {levels}")
        self.levels = levels
        self.register_buffer("haar", _HAAR.clone(), persistent=False)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = x.shape
        y = torch.einsum("ij,bcjhw->bcihw", self.haar.to(x.dtype), x.reshape(b, c4 // 4, 4, h, w))
        return y.reshape(b, c4, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.levels):
            x = self._mix(F.pixel_unshuffle(x, 2))
        return x

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.levels):
            x = F.pixel_shuffle(self._mix(x), 2)  # the mixing matrix is its own inverse
        return x


class DenseSubnet(nn.Module):
    """HiNet's dense sub-network, made small: (B, in_ch, H, W) -> (B, out_ch, H, W).

    A 1x1 bottleneck to ``growth`` channels, two densely connected 3x3 convs (each sees all earlier features), and a
    1x1 output over the concatenation, initialised near zero so every coupling starts close to the identity.
    """

    def __init__(self, in_ch: int, out_ch: int, growth: int) -> None:
        super().__init__()
        g = growth
        self.inp = nn.Conv2d(in_ch, g, 1)
        self.c1 = nn.Conv2d(g, g, 3, padding=1)
        self.c2 = nn.Conv2d(2 * g, g, 3, padding=1)
        self.out = nn.Conv2d(3 * g, out_ch, 1)
        _init_out(self.out)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.act(self.inp(x))
        h1 = self.act(self.c1(h0))
        h2 = self.act(self.c2(torch.cat([h0, h1], dim=1)))
        return self.out(torch.cat([h0, h1, h2], dim=1))


class CouplingBlock(nn.Module):
    """HiNet's invertible block on the cover branch x1 (c1 channels) and the secret branch x2 (c2 channels).

    Forward:  y1 = x1 + phi(x2);   y2 = x2 * exp(s(y1)) + eta(y1),   s = clamp * (2 sigmoid(rho(y1)) - 1).
    Inverse:  x2 = (y2 - eta(y1)) * exp(-s(y1));   x1 = y1 - phi(x2).
    """

    def __init__(self, c1: int, c2: int, growth: int) -> None:
        super().__init__()
        self.phi = DenseSubnet(c2, c1, growth)
        self.rho = DenseSubnet(c1, c2, growth)
        self.eta = DenseSubnet(c1, c2, growth)

    def _log_scale(self, y1: torch.Tensor) -> torch.Tensor:
        return COUPLING_CLAMP * (2 * torch.sigmoid(self.rho(y1)) - 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1 = x1 + self.phi(x2)
        y2 = x2 * torch.exp(self._log_scale(y1)) + self.eta(y1)
        return y1, y2

    def inverse(self, y1: torch.Tensor, y2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x2 = (y2 - self.eta(y1)) * torch.exp(-self._log_scale(y1))
        x1 = y1 - self.phi(x2)
        return x1, x2


def hinet_dims(cfg: ModelConfig) -> tuple[int, int, int]:
    """(Haar levels, coupling blocks, sub-net growth) of the HiNet baseline for ``cfg``."""
    s = cfg.network.stem_stride
    if s & (s - 1):
        raise ValueError(f"the HiNet baseline needs a power-of-two stem_stride, got {s}")
    levels = max(1, int(math.log2(s)))
    blocks = cfg.network.hinet_blocks
    growth = max(4, cfg.network.width // 3)
    return levels, blocks, growth


class InvertibleTrunk(nn.Module):
    """The HiNet trunk shared by embed and reveal: DWT, ``blocks`` coupling blocks, inverse DWT.

    ``hide``: (cover (B, C, N, N), secrets (B, K*C, N, N)) -> (stego - cover) (B, C, N, N). The secret branch's
    output r (the "lost information") is discarded.
    ``recover``: stego (B, C, N, N) -> secrets (B, K*C, N, N): the blocks run in reverse with r replaced by zeros.
    HiNet samples r from a standard normal at reveal time; we use that distribution's mean, zero, so reveal is
    deterministic and exports as a plain graph (training then teaches the net a reveal that works with r = 0).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        levels, blocks, growth = hinet_dims(cfg)
        self.dwt = HaarDWT(levels)
        self.multiple = 2**levels
        c1 = cfg.channels * 4**levels
        c2 = cfg.num_secrets * c1
        self.c2 = c2
        self.blocks = nn.ModuleList(CouplingBlock(c1, c2, growth) for _ in range(blocks))

    def hide(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        _check_size(cover, self.multiple)
        x1 = self.dwt(cover - 0.5)
        y1, y2 = x1, self.dwt(secrets - 0.5)
        for block in self.blocks:
            y1, y2 = block(y1, y2)
        # stego - cover = IDWT(y1) - IDWT(x1) = IDWT(y1 - x1): the transform is linear, and this form keeps the
        # residual free of the rounding error of a DWT round trip.
        return self.dwt.inverse(y1 - x1)

    def recover(self, stego: torch.Tensor) -> torch.Tensor:
        _check_size(stego, self.multiple)
        y1 = self.dwt(stego - 0.5)
        y2 = y1.new_zeros(y1.shape[0], self.c2, *y1.shape[-2:])
        for block in reversed(self.blocks):
            y1, y2 = block.inverse(y1, y2)
        return self.dwt.inverse(y2) + 0.5


class HiNetEmbedder(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N), score (ignored)) -> residual (B, C, N, N)."""

    def __init__(self, trunk: InvertibleTrunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor | None = None) -> torch.Tensor:
        return self.trunk.hide(cover, secrets)


class HiNetRevealer(nn.Module):
    """stego (B, C, N, N) -> secrets (B, K*C, N, N), unclamped.

    Shares its coupling blocks with the embedder (one set of weights, run backwards).
    """

    def __init__(self, trunk: InvertibleTrunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, stego: torch.Tensor) -> torch.Tensor:
        return self.trunk.recover(stego)


class ConvBlock(nn.Sequential):
    """Two 3x3 convs with SiLU: (B, in_ch, H, W) -> (B, out_ch, H, W)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.SiLU(), nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.SiLU()
        )


class UNet(nn.Module):
    """A plain U-Net: (B, in_ch, H, W) -> (B, out_ch, H, W), any H and W.

    Encoder: a ConvBlock per scale (widths ``width * 2**i``), 2x2 max-pooling between scales (ceil mode, so odd sizes
    work). Decoder: bilinear up-sampling to the skip's size, concatenation with the skip, a ConvBlock. A 1x1 head.
    """

    def __init__(self, in_ch: int, out_ch: int, width: int, depth: int) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth)]
        self.enc = nn.ModuleList(ConvBlock(a, b) for a, b in zip([in_ch, *widths[:-1]], widths, strict=True))
        self.dec = nn.ModuleList(ConvBlock(widths[i] + widths[i + 1], widths[i]) for i in range(depth - 1))
        self.head = nn.Conv2d(widths[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = enc(x)
            skips.append(x)
        for i in reversed(range(len(self.dec))):
            skip = skips[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.dec[i](torch.cat([skip, x], dim=1))
        return self.head(x)


def unet_dims(cfg: ModelConfig) -> tuple[int, int]:
    """(base width, depth) of the U-Net baseline for ``cfg``."""
    return max(4, cfg.network.width * 3 // 4), cfg.network.unet_depth


class UNetEmbedder(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N), score (ignored)) -> residual (B, C, N, N).

    The U-Net sees fold(cat(cover, secrets), s) (pixel-unshuffle by the stem stride, as SRIS-Net's stem does) and its
    output is unfolded back to full resolution.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s, c, k = cfg.network.stem_stride, cfg.channels, cfg.num_secrets
        width, depth = unet_dims(cfg)
        self.stride = s
        self.net = UNet((1 + k) * c * s * s, c * s * s, width, depth)
        _init_out(self.net.head)

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor | None = None) -> torch.Tensor:
        _check_size(cover, self.stride)
        x = fold(torch.cat([cover, secrets], dim=1) - 0.5, self.stride)
        return unfold(self.net(x), self.stride)


class UNetRevealer(nn.Module):
    """stego (B, C, N, N) -> secrets (B, K*C, N, N), unclamped."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s, c, k = cfg.network.stem_stride, cfg.channels, cfg.num_secrets
        width, depth = unet_dims(cfg)
        self.stride = s
        self.net = UNet(c * s * s, k * c * s * s, width, depth)

    def forward(self, stego: torch.Tensor) -> torch.Tensor:
        _check_size(stego, self.stride)
        return unfold(self.net(fold(stego - 0.5, self.stride)), self.stride) + 0.5


def build_paths(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """The untrained (embedder, revealer) of the baseline ``cfg.network.arch``, ``hinet`` or ``unet``.

    HiNet's trunk is registered under both paths (its state_dict keys appear twice, holding the same tensors), so
    each path is a self-contained module for export and parameter counts.
    """
    arch = cfg.network.arch
    if arch == "hinet":
        trunk = InvertibleTrunk(cfg)
        return HiNetEmbedder(trunk), HiNetRevealer(trunk)
    if arch == "unet":
        return UNetEmbedder(cfg), UNetRevealer(cfg)
    raise ValueError(f"no baseline called {arch!r}: expected hinet or unet")
