"""The dual-task discriminator: real/fake logit plus a per-pixel embedding score map of the cover."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The 5x5 "KV" high-pass kernel of the spatial rich model; steganalysis nets start from it because embedding noise
# lives in the high frequencies that natural image content hides.
_KV = (
    torch.tensor(
        [
            [-1.0, 2.0, -2.0, 2.0, -1.0],
            [2.0, -6.0, 8.0, -6.0, 2.0],
            [-2.0, 8.0, -12.0, 8.0, -2.0],
            [2.0, -6.0, 8.0, -6.0, 2.0],
            [-1.0, 2.0, -2.0, 2.0, -1.0],
        ]
    )
    / 12.0
)


def score_logits_to_map(logits: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Score logits at N/4 (B, 1, h, w) -> the score map (B, 1, *size) in [0, 1]: bilinear up, then sigmoid (both
    score heads; the inference graph does the same on folded tensors, ``pipeline/model/inference.py``)."""
    return torch.sigmoid(F.interpolate(logits, size=size, mode="bilinear", align_corners=False))


class DualTaskDiscriminator(nn.Module):
    """(B, C, H, W) image in [0, 1] -> (real/fake logit (B,), score map (B, 1, H, W) in [0, 1]).

    A shared trunk (fixed KV high-pass residual concatenated with the image, then three convs down to H/4) feeds
    two heads. Task 1, real/fake: is this a cover (real) or a stego (fake)? Task 2, the score map: how well each
    cover pixel can hide a change (1 = textured, safe; 0 = flat, where any change shows). The embedder scales its
    residual by the score map, and ``score_map`` alone is what runs inside the exported embed engine.
    """

    def __init__(self, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.register_buffer("kv", _KV[None, None], persistent=False)
        d = width
        self.trunk = nn.Sequential(
            nn.Conv2d(2 * channels, d, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(d, 2 * d, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * d, 2 * d, 3, padding=1),
            nn.SiLU(),
        )
        self.realfake = nn.Sequential(
            nn.Conv2d(2 * d, 4 * d, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(4 * d, 4 * d, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.realfake_fc = nn.Linear(4 * d, 1)
        self.score = nn.Sequential(nn.Conv2d(2 * d, d, 3, padding=1), nn.SiLU(), nn.Conv2d(d, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        hp = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kv.to(x.dtype).expand(c, 1, 5, 5), groups=c)
        # The high-pass residual of an 8-bit image is tiny on the [0, 1] scale; x20 brings it to unit range.
        return self.trunk(torch.cat([x, 20.0 * hp], dim=1))

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H, W) in [0, 1]."""
        s = self.score(self.features(x))
        return score_logits_to_map(s, x.shape[-2:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        logit = self.realfake_fc(self.realfake(f).mean(dim=(2, 3))).squeeze(1)
        s = self.score(f)
        score = score_logits_to_map(s, x.shape[-2:])
        return logit, score


class LightScore(nn.Module):
    """The score map for inference, distilled from the discriminator's: cover folded by 4, minus 0.5,
    (B, C*16, N/4, N/4) -> score logits (B, 1, N/4, N/4).

    The discriminator's score head sits on the trunk of its real/fake task (full-resolution input, a high-pass
    branch, four 3x3 convolutions, ~180 MFLOPs at 256 px): exported inside embed it took ~28% of embed's time on
    the CPU. This head works on the cover folded by 4, which embed computes anyway, and learns the discriminator's
    map by L1 distillation (~55 MFLOPs at 256 px). Its first layer is a classic texture-energy measure: ``width * 2``
    linear filters of each 4x4 block and their absolute values (with SiLU there instead, the distilled map missed
    36% more of the discriminator's). A model with one (``config.light_score``) embeds with it; training keeps
    feeding the embedder the discriminator's own map and distils this head beside it.
    """

    FOLD = 4

    def __init__(self, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.energy = nn.Conv2d(channels * self.FOLD**2, 2 * width, 1)
        self.net = nn.Sequential(
            nn.Conv2d(2 * width, width, 1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, cover_folded: torch.Tensor) -> torch.Tensor:
        return self.net(self.energy(cover_folded).abs())

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H, W) in [0, 1], H and W multiples of 4."""
        s = self(F.pixel_unshuffle(x, self.FOLD) - 0.5)
        return score_logits_to_map(s, x.shape[-2:])


def texture_target(cover: torch.Tensor, window: int = 7, scale: float = 0.04) -> torch.Tensor:
    """Target of the score-map task: local texture strength of the cover, (B, C, H, W) -> (B, 1, H, W) in [0, 1).

    ``1 - exp(-std / scale)`` of the luminance in a ``window`` box: ~0.1 in a clear sky, ~0.9 in foliage. Changes in
    textured regions are masked both for the eye (SSIM) and for steganalysis, the classic HUGO/WOW cost idea.
    """
    y = cover.mean(dim=1, keepdim=True)
    pad = window // 2
    yp = F.pad(y, (pad, pad, pad, pad), mode="replicate")
    mean = F.avg_pool2d(yp, window, stride=1)
    var = (F.avg_pool2d(yp * yp, window, stride=1) - mean * mean).clamp_min(0)
    return 1 - torch.exp(-torch.sqrt(var + 1e-8) / scale)
