"""The carrier: a learnable linear code inside SRIS-Net, initialised to an analytic one that works from step 0.

Why: the first CPU runs of SRIS-Net (and both baselines) learned their hidden code slowly: after 66 CPU-minutes the
recovered secret was at 18.4 dB, worse than a 16x16 thumbnail of the secret blown back up (21.8 dB on the held-out
photos). A fixed linear code does better with no training at all. On 4x4 pixel blocks, write each block mean of
the secret into one 4x4 DCT coefficient of the same colour channel of the cover, after removing the cover's own
value of that coefficient (so the coefficient reads back exactly, whatever the cover: "informed" embedding):

    t = a * 4 * (mean_block(secret) - 0.5 + 0.1 r)         the target coefficient (a: amplitude in [0, 1] units;
                                                           r: a known random +-1 pilot sign per block)
    residual = P (t - P^T cover)                           P: the 4x4 DCT basis image of coefficient (u, v)
    y = P^T stego / (4 a);  g = mean(y r) / 0.1            g: the gain an attack's filter applied to the code
    thumbnail = y / g - 0.1 r + 0.5  ->  bilinear x4       the first estimate of the secret

Chosen on 16 photos at 256 px, 8-bit, secret PSNR of the code alone (cover PSNR / SSIM; clean, 3x3 mean, Gaussian
sigma 1, sharpen, noise sigma 5): coefficient (1, 2) at 12 grey levels: 36.8 dB / 0.916; 26.5, 14.0, 18.3, 23.3,
21.2 dB; (2, 2): 37.4 / 0.919; 26.3, 11.5, 15.0, 22.8, 21.2 dB; (1, 1): 35.3 / 0.907; 26.4, 11.6, 13.8, 18.9,
21.3 dB. Without the pilot, sharpening (x5 on coefficient (2, 2)) left 12 dB. So the code alone gives a good clean
secret but is neither robust to blur nor invisible enough (SSIM): that is what training adds.

The three maps are 1x1 convolutions on 4x4-folded tensors (``CarrierWriter`` in embed: ``write`` secret ->
residual, ``cancel`` cover -> residual; ``CarrierReader`` in reveal: ``read`` stego -> thumbnail), initialised to
the code and trained with the rest of the network. SRIS-Net's deep paths (LPFDD, GLEM, DMSubNet) start near zero and
learn what the linear code cannot: pre-compensating blur, hiding in texture, detail above the thumbnail. With K
secrets, secret k uses coefficient ``COEFFS[k]``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BLOCK = 4
COEFFS = ((1, 2), (2, 1), (2, 2), (0, 2))
# Pilot: a known +-1 sign per block, PILOT times the code's gain, added to every coefficient of the code. Reveal
# measures the pilot's amplitude (a correlation over all blocks of the image) and divides the coefficients by it,
# undoing whatever gain a filter applied at the code's frequency (sharpening multiplies coefficient (2, 2) by about
# 5, a 3x3 mean filter by about 1/9). Costs ~ (0.1 / 0.25)^2 = 16% more code energy; gain error ~ 4% at 256 px.
PILOT = 0.1
PILOT_SEED = 0xC0DE
PILOT_TILE = 64  # blocks; tiled for larger images, like the mirror-sync pattern


@functools.lru_cache(maxsize=16)
def _pilot_np(h: int, w: int) -> np.ndarray:
    tile = np.random.default_rng(PILOT_SEED).choice(np.array([-1.0, 1.0], dtype=np.float32), (PILOT_TILE, PILOT_TILE))
    return np.tile(tile, (-(-h // PILOT_TILE), -(-w // PILOT_TILE)))[:h, :w]


def pilot(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """The pilot signs (1, 1, h, w) for an (h, w) grid of blocks, on ``like``'s device and dtype."""
    return torch.from_numpy(_pilot_np(h, w)).to(like.device, like.dtype)[None, None]


def dct_basis(u: int, v: int, n: int = BLOCK) -> torch.Tensor:
    """The orthonormal 2-D DCT-II basis image (n, n) of coefficient (u, v) (unit norm)."""
    i = torch.arange(n, dtype=torch.float64)

    def one(k: int) -> torch.Tensor:
        scale = math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)
        return scale * torch.cos(math.pi * (i + 0.5) * k / n)

    return torch.outer(one(u), one(v)).float()


def _code(
    channels: int, num_secrets: int, coeffs: tuple[tuple[int, int], ...] = COEFFS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The analytic code as 1x1-conv weights on 4x4-folded tensors, at unit gain: (write, cancel, read).

    write (C*16, K*C*16): folded secret - 0.5 -> folded residual / gain * 16; cancel (C*16, C*16): folded cover ->
    folded residual; read (K*C, C*16): folded stego -> (block means of the secrets - 0.5) * gain.
    """
    c, k, b2 = channels, num_secrets, BLOCK * BLOCK
    write, cancel, read = torch.zeros(c * b2, k * c * b2), torch.zeros(c * b2, c * b2), torch.zeros(k * c, c * b2)
    for s in range(k):
        p = dct_basis(*coeffs[s]).flatten()  # pixel-unshuffle order within a block: dy * 4 + dx
        for ch in range(c):
            rows = slice(ch * b2, (ch + 1) * b2)  # this colour channel's 16 folded pixels
            src = (s * c + ch) * b2
            write[rows, src : src + b2] += torch.outer(p, torch.ones(b2))  # p * sum of the block
            cancel[rows, rows] -= torch.outer(p, p)  # remove the cover's own value of the coefficient
            read[s * c + ch, rows] = p
    return write, cancel, read


def _gain(amplitude255: float) -> float:
    """Coefficient value per unit of secret for a code of ``amplitude255`` grey levels."""
    return BLOCK * amplitude255 / 255.0


class CarrierWriter(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N)) -> the code's residual (B, C, N, N); N a multiple of 4."""

    def __init__(
        self, channels: int, num_secrets: int, amplitude255: float, coeffs: tuple[tuple[int, int], ...] = COEFFS
    ) -> None:
        super().__init__()
        b2 = BLOCK * BLOCK
        self.write = nn.Conv2d(num_secrets * channels * b2, channels * b2, 1, bias=False)
        self.cancel = nn.Conv2d(channels * b2, channels * b2, 1, bias=False)
        # The weights are kept at unit scale and the gain applied outside: Adam moves every weight by about the
        # learning rate per step, which at the code's natural scale (write ~0.006) rewrote it within a few steps.
        self.write_scale = _gain(amplitude255) / b2
        write, cancel, _ = _code(channels, num_secrets, coeffs)
        with torch.no_grad():
            self.write.weight.copy_(write[..., None, None])
            self.cancel.weight.copy_(cancel[..., None, None])

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(secrets - 0.5, BLOCK)
        # The pilot rides on every coefficient of the code (write averages a block's 16 entries into it).
        x = x + PILOT * pilot(*x.shape[-2:], x)
        folded = self.write(x) * self.write_scale + self.cancel(F.pixel_unshuffle(cover, BLOCK))
        return F.pixel_shuffle(folded, BLOCK)


class CarrierReader(nn.Module):
    """stego (B, C, N, N) -> the code's estimate of the secrets (B, K*C, N, N): block means, bilinear x4."""

    def __init__(
        self, channels: int, num_secrets: int, amplitude255: float, coeffs: tuple[tuple[int, int], ...] = COEFFS
    ) -> None:
        super().__init__()
        self.read = nn.Conv2d(channels * BLOCK * BLOCK, num_secrets * channels, 1)
        self.read_scale = 1.0 / _gain(amplitude255)  # unit-scale weights, as in CarrierWriter
        _, _, read = _code(channels, num_secrets, coeffs)
        with torch.no_grad():
            self.read.weight.copy_(read[..., None, None])
            self.read.bias.zero_()

    def thumbnails(self, stego: torch.Tensor) -> torch.Tensor:
        """(B, C, N, N) -> (B, K*C, N/4, N/4): the secrets' 4x4 block means, gain-corrected by the pilot."""
        y = self.read(F.pixel_unshuffle(stego, BLOCK)) * self.read_scale  # (s - 0.5) + PILOT * sign, times gain g
        r = pilot(*y.shape[-2:], y)
        # g per image and channel: the pilot's correlation (the secret is uncorrelated with the random signs). Floor
        # at 0.02: a filter that wiped the code out must not blow the noise up 1000-fold.
        g = ((y * r).mean(dim=(2, 3), keepdim=True) / PILOT).clamp_min(0.02)
        return y / g - PILOT * r + 0.5

    def forward(self, stego: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.thumbnails(stego), scale_factor=BLOCK, mode="bilinear", align_corners=False)
