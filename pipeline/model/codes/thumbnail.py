"""The thumbnail code: the secret's block means written into block-DCT coefficients of the cover.

Why: a learned hiding net on a CPU budget learns its code slowly, while a fixed linear code reveals a usable
thumbnail of the secret before any training. SRIS-Net starts from one and trains it (at a low learning rate) with
the rest, and the learned reveal path corrects what the code reads. "Informed" embedding removes the cover's own
value of the coefficient, so it reads back whatever the cover:

    t = gain * (block mean of the secret - 0.5 + 0.1 r)     r: a known random +-1 pilot sign per block
    residual = P (t - P^T cover)                            P: the DCT basis image of coefficient (u, v)
    y = P^T stego / gain;  g = mean(y r) / 0.1              g: the gain an attack's filter applied to the code
    mean estimate = y / g - 0.1 r + 0.5

Two scales: the base code (8x8 blocks, one coefficient per secret) carries the 8x8 means, robust to blur; the detail
code (4x4 blocks, one coefficient for each of the first ``ModelConfig.detail_secrets`` secrets) carries what the 4x4
means add to the upsampled 8x8 means, used where its pilot says it survived. ``CodeLayout`` says which coefficient
carries which secret. With ``ModelConfig.base_tile`` the base slots carry a DCT over each 4x4 group of 8x8 means, each
frequency at its own gain (``TileCode``). The basis images are orthogonal on every 8x8 block, so the codes do not
disturb each other. The pilots also serve the blind deblur (``deblur.py``) and the mirror decision
(``ThumbnailReader.mirrored``). All maps are 1x1 convolutions on block-folded tensors (``ThumbnailWriter`` in embed,
``ThumbnailReader`` in reveal). Measurements: ``pipeline/weights/MODEL_CARD_analog.md`` and ``docs/history.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.codes.layout import BASE_BLOCK, DETAIL_BLOCK, SHARED_BASE, CodeLayout
from pipeline.model.codes.mirror import mirror_image
from pipeline.model.codes.signs import signs_like

# Pilot: PILOT x gain x a known +-1 sign per block, added to every coefficient of a code. Reveal measures its
# amplitude (a correlation over all blocks) and divides the coefficients by it, undoing the gain a filter applied at
# the code's frequency. Costs ~ (0.1 / 0.25)^2 = 16% more base-code energy; gain error ~ 4% at 256 px.
PILOT = 0.1
PILOT_SEED = 0xC0DE
PILOT_TILE = 64  # blocks; tiled for larger images, like the mirror pattern
# Detail gate: the detail code counts fully where its measured gain is >= GATE_HI, not at all below GATE_LO.
GATE_LO, GATE_HI = 0.35, 0.65
# The detail values are small (std ~0.05 against ~0.25 for the means), so they are written DETAIL_BOOST times larger:
# otherwise noise of sigma 5 grey levels is larger than the detail it reads.
DETAIL_BOOST = 3.0
# Tile code of the base (``ModelConfig.base_tile``): the 8x8 means of each TILE x TILE group of blocks go through a
# 2-D DCT and frequency (u, v) is written TILE_GAINS[u][v] times its value, in the slot of block (u, v) of the tile.
# The gains are the optimal linear power allocation for MMSE over additive white noise (power to each frequency in
# proportion to its standard deviation, minus the noise; Lee and Petersen's classic result), for the base code at 10
# grey levels under noise of sigma 5, from the spectrum of the 37 training photos' 8x8 means at 256 px
# (``research/base_tile_gains.py``), scaled so the expected code power stays that of the plain code. The tile's mean
# (0.72) gives up half its power to the weaker frequencies (1.5x to 3.4x): with a Wiener reader that is 29.5 dB on
# the means under that noise against 26.3 dB for the plain code on the same photos.
TILE = 4
TILE_GAINS = (
    (0.716, 1.569, 2.025, 2.554),
    (1.459, 1.971, 2.467, 2.965),
    (1.938, 2.377, 2.768, 3.217),
    (2.531, 2.815, 3.112, 3.443),
)


def pilot(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """The pilot signs (1, 1, h, w) for an (h, w) grid of blocks, on ``like``'s device and dtype."""
    return signs_like(h, w, PILOT_TILE, PILOT_SEED, like)


def dct_basis(u: int, v: int, n: int) -> torch.Tensor:
    """The orthonormal 2-D DCT-II basis image (n, n) of coefficient (u, v) (unit norm)."""
    i = torch.arange(n, dtype=torch.float64)

    def one(k: int) -> torch.Tensor:
        scale = math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)
        return scale * torch.cos(math.pi * (i + 0.5) * k / n)

    return torch.outer(one(u), one(v)).float()


def _code(
    channels: int, coeffs: tuple[tuple[int, int], ...], block: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A code on ``block``-folded tensors, at unit gain, one coefficient per input image: (write, cancel, read).

    write (C*b2, S*C*b2): folded input -> folded residual (sums a block's b2 entries into the coefficient); cancel
    (C*b2, C*b2): folded cover -> folded residual; read (S*C, C*b2): folded stego -> coefficients. S = len(coeffs).
    """
    c, n, b2 = channels, len(coeffs), block * block
    write, cancel, read = torch.zeros(c * b2, n * c * b2), torch.zeros(c * b2, c * b2), torch.zeros(n * c, c * b2)
    for s, coeff in enumerate(coeffs):
        p = dct_basis(*coeff, block).flatten()  # pixel-unshuffle order within a block: dy * block + dx
        for ch in range(c):
            rows = slice(ch * b2, (ch + 1) * b2)  # this colour channel's folded pixels
            src = (s * c + ch) * b2
            write[rows, src : src + b2] += torch.outer(p, torch.ones(b2))
            cancel[rows, rows] -= torch.outer(p, p)  # remove the cover's own value of the coefficient
            read[s * c + ch, rows] = p
    return write, cancel, read


def _codes(channels: int, layout: CodeLayout) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The base code (8x8 blocks) and the detail code (4x4 blocks) of ``layout``."""
    return _code(channels, layout.base, BASE_BLOCK), _code(channels, layout.detail, DETAIL_BLOCK)


def _checked(layout: CodeLayout | None, num_secrets: int) -> CodeLayout:
    layout = CodeLayout.of(num_secrets) if layout is None else layout
    if layout.num_secrets != num_secrets:
        raise ValueError(f"a layout for {layout.num_secrets} secrets given to a code of {num_secrets}")
    return layout


def _gain(amplitude255: float, block: int) -> float:
    """Coefficient value per unit of secret for a code of ``amplitude255`` grey levels on ``block`` blocks."""
    return block * amplitude255 / 255.0


def _conv(cin: int, cout: int, weight: torch.Tensor, bias: bool = False) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(weight[..., None, None])
        if bias:
            conv.bias.zero_()
    return conv


def tile_dct() -> torch.Tensor:
    """The orthonormal 2-D DCT on a TILE x TILE grid as a (TILE^2, TILE^2) matrix: row u * TILE + v is the basis
    image of frequency (u, v), flattened in the grid's row-major order (as ``pixel_unshuffle`` folds a tile)."""
    return torch.stack([dct_basis(u, v, TILE).flatten() for u in range(TILE) for v in range(TILE)])


class TileCode(nn.Module):
    """The base code's tile transform on a grid of block means (B, S, h, w) -> the same shape: ``forward`` gives what
    the slots carry, ``inverse`` the means back. Blocks outside whole tiles (at the right and bottom edges of sizes
    that are not multiples of TILE x 8 px) pass unchanged. A fixed linear map, no weights."""

    def __init__(self) -> None:
        super().__init__()
        dct = tile_dct()
        gains = torch.tensor(TILE_GAINS).flatten()
        self.register_buffer("fwd", gains[:, None] * dct, persistent=False)  # slots = gains * DCT(means)
        self.register_buffer("inv", dct.T / gains[None, :], persistent=False)

    def _map(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        s, (h, w) = x.shape[1], x.shape[-2:]
        hf, wf = h - h % TILE, w - w % TILE
        if hf == 0 or wf == 0:
            return x
        # Each channel's tiles folded into TILE^2 channels, mapped by one grouped 1x1 convolution (a form every
        # engine runs as a plain convolution), unfolded back.
        core = F.pixel_unshuffle(x[..., :hf, :wf], TILE)
        core = F.pixel_shuffle(F.conv2d(core, m.to(x.dtype).repeat(s, 1)[..., None, None], groups=s), TILE)
        if hf < h:
            core = torch.cat([core, x[..., hf:, :wf]], dim=2)
        if wf < w:
            core = torch.cat([core, x[..., :, wf:]], dim=3)
        return core

    def forward(self, means: torch.Tensor) -> torch.Tensor:
        return self._map(means, self.fwd)

    def inverse(self, slots: torch.Tensor) -> torch.Tensor:
        return self._map(slots, self.inv)


def detail_of(means4: torch.Tensor, means8: torch.Tensor) -> torch.Tensor:
    """What the 4x4 means add to the bilinear 2x upsampling of the 8x8 means (what reveal can rebuild)."""
    return means4 - F.interpolate(means8, scale_factor=2, mode="bilinear", align_corners=False)


class ThumbnailWriter(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N)) -> the codes' residual (B, C, N, N); N a multiple of 8.

    ``layout``: which coefficients carry which secret (default: ``CodeLayout.of(num_secrets)``)."""

    def __init__(
        self,
        channels: int,
        num_secrets: int,
        amplitude255: float,
        tile: bool = False,
        layout: CodeLayout | None = None,
    ) -> None:
        super().__init__()
        c, k = channels, num_secrets
        layout = _checked(layout, k)
        (bw, bc, _), (dw, dc, _) = _codes(c, layout)
        self.tile = TileCode() if tile else None
        b8, b4 = BASE_BLOCK**2, DETAIL_BLOCK**2
        # Weights at unit scale, gains applied outside: Adam moves every weight by about the learning rate per step,
        # which at the code's natural scale (write ~0.006) rewrote it within a few steps.
        self.base_write, self.base_cancel = _conv(k * c * b8, c * b8, bw), _conv(c * b8, c * b8, bc)
        self.detail_write, self.detail_cancel = _conv(dw.shape[1], c * b4, dw), _conv(c * b4, c * b4, dc)
        self.base_scale = _gain(amplitude255, BASE_BLOCK) / b8  # write sums b8 entries: their mean times the gain
        self.detail_scale = DETAIL_BOOST * _gain(amplitude255, DETAIL_BLOCK) / b4
        self.channels, self.detail_secrets = c, layout.detail_secrets

    def base(self, cover: torch.Tensor, secrets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The base code's residual, folded by 8: (B, C*64, N/8, N/8); ``weight`` (B, 1, N, N) scales what is
        written per block (the cover's own coefficient is still cancelled in full)."""
        xb = F.pixel_unshuffle(secrets - 0.5, BASE_BLOCK)
        if self.tile is not None:
            # base_write reads each block's mean (a sum of its 64 entries): shifting all 64 by the same amount
            # makes it read the tile code's slot value instead, whatever it learned about the entries' pattern.
            means = F.avg_pool2d(secrets - 0.5, BASE_BLOCK)
            xb = xb + (self.tile(means) - means).repeat_interleave(BASE_BLOCK**2, dim=1)
        xb = xb + PILOT * pilot(*xb.shape[-2:], xb)
        written = self.base_write(xb) * self.base_scale
        if weight is not None:
            written = written * F.avg_pool2d(weight, BASE_BLOCK)
        return written + self.base_cancel(F.pixel_unshuffle(cover, BASE_BLOCK))

    def detail(self, cover4: torch.Tensor, secrets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The detail code's residual, folded by 4: (B, C*16, N/4, N/4); ``cover4`` is the cover folded by 4,
        ``weight`` as in ``base``."""
        carried = F.avg_pool2d(secrets[:, : self.detail_secrets * self.channels], DETAIL_BLOCK)
        xd = detail_of(carried, F.avg_pool2d(carried, 2))
        xd = xd + (PILOT / DETAIL_BOOST) * pilot(*xd.shape[-2:], xd)
        # The code spreads each 4x4 block's value over its 16 pixels and ``detail_write`` sums what it reads: on the
        # 16 identical folded copies that is one 1x1 conv with the weights summed over each block's 16 inputs.
        w = self.detail_write.weight
        w = w.reshape(w.shape[0], xd.shape[1], DETAIL_BLOCK**2).sum(-1)[..., None, None]
        written = F.conv2d(xd, w) * self.detail_scale
        if weight is not None:
            written = written * F.avg_pool2d(weight, DETAIL_BLOCK)
        return written + self.detail_cancel(cover4)

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        base = self.base(cover, secrets, weight)
        detail = self.detail(F.pixel_unshuffle(cover, DETAIL_BLOCK), secrets, weight)
        return F.pixel_shuffle(base, BASE_BLOCK) + F.pixel_shuffle(detail, DETAIL_BLOCK)


def pilot_gain(y: torch.Tensor, amplitude: float = PILOT, signs: torch.Tensor | None = None) -> torch.Tensor:
    """Coefficients (B, S, h, w) carrying ``value + amplitude * sign`` times an unknown gain -> that gain (B, S, 1, 1),
    unclamped: the pilot's correlation (the values are uncorrelated with the random signs). ``signs``: the pilot of
    that grid when the caller already holds it."""
    signs = pilot(*y.shape[-2:], y) if signs is None else signs
    return (y * signs).mean(dim=(2, 3), keepdim=True) / amplitude


def _gain_corrected(y: torch.Tensor, amplitude: float = PILOT) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients carrying ``value + amplitude * sign`` times an unknown gain -> (values, gain (B, S, 1, 1)).

    The gain is ``pilot_gain``, floored at 0.02: a filter that wiped a code out must not blow its noise up 1000-fold.
    """
    signs = pilot(*y.shape[-2:], y)
    g = pilot_gain(y, amplitude, signs).clamp_min(0.02)
    return y / g - amplitude * signs, g


class ThumbnailReader(nn.Module):
    """stego (B, C, N, N) -> the codes' estimate of the secrets (B, K*C, N, N); N a multiple of 8.
    ``layout`` as in ``ThumbnailWriter``."""

    def __init__(
        self,
        channels: int,
        num_secrets: int,
        amplitude255: float,
        tile: bool = False,
        layout: CodeLayout | None = None,
    ) -> None:
        super().__init__()
        c, k = channels, num_secrets
        layout = _checked(layout, k)
        (_, _, br), (_, _, dr) = _codes(c, layout)
        self.tile = TileCode() if tile else None
        self.base_read = _conv(c * BASE_BLOCK**2, k * c, br, bias=True)
        self.detail_read = _conv(c * DETAIL_BLOCK**2, layout.detail_secrets * c, dr, bias=True)
        self.base_scale = 1.0 / _gain(amplitude255, BASE_BLOCK)  # unit-scale weights, as in ThumbnailWriter
        self.detail_scale = 1.0 / (DETAIL_BOOST * _gain(amplitude255, DETAIL_BLOCK))
        self.channels = c
        self.pilot_rows = c * min(k, SHARED_BASE)  # the measured pilots' rows of ``base_read``

    def base_coefficients(self, stego: torch.Tensor) -> torch.Tensor:
        """(B, C, N, N) -> the base code's coefficients (B, K*C, N/8, N/8), pilot included, gain not undone."""
        return self.base_read(F.pixel_unshuffle(stego, BASE_BLOCK)) * self.base_scale

    def base_kernel(self) -> torch.Tensor:
        """The base code's read map as an 8x8 convolution kernel (K*C, C, 8, 8), gain not undone: applied at stride 8
        it gives ``base_coefficients`` without the bias; at stride 1 it reads the block whose top-left pixel is (i, j)
        at every (i, j) (the 1x1 weights are laid out as the block fold)."""
        c = self.channels
        return self.base_read.weight.reshape(-1, c, BASE_BLOCK, BASE_BLOCK) * self.base_scale

    def pilot_coefficients(self, stego: torch.Tensor) -> torch.Tensor:
        """``base_coefficients`` of the measured pilots' rows only (``pilot_rows``): (B, R, N/8, N/8)."""
        rows = self.pilot_rows
        w, b = self.base_read.weight[:rows], self.base_read.bias[:rows]
        return F.conv2d(F.pixel_unshuffle(stego, BASE_BLOCK), w, b) * self.base_scale

    def pilot_kernel(self) -> torch.Tensor:
        """``base_kernel`` of the measured pilots' rows (``pilot_rows``): (R, C, 8, 8)."""
        return self.base_kernel()[: self.pilot_rows]

    def detail_coefficients(self, stego4: torch.Tensor) -> torch.Tensor:
        """The stego folded by 4 (B, C*16, N/4, N/4) -> the detail code's coefficients (B, D*C, N/4, N/4) for its D
        secrets, pilot included, gain not undone."""
        return self.detail_read(stego4) * self.detail_scale

    def mirrored(self, stego: torch.Tensor) -> torch.Tensor:
        """(B, C, N, N) -> (B,) bool: the stego was mirrored left-right after embedding, read from the base code's
        pilot (``ModelConfig.mirror == "pilot"``): it correlates with the known signs in the stego's own orientation and
        not in the mirrored one (a mirror maps each 8x8 block's coefficient (u, v) onto the mirrored block's, times
        (-1)^v, and the mirrored sign pattern is uncorrelated with the pilot). The pilot is in every stego already,
        at 0.1 of the code's unit and summed over every block, so it decides as a dedicated mirror pattern did."""

        def strength(x: torch.Tensor) -> torch.Tensor:
            return pilot_gain(self.pilot_coefficients(x)).mean(dim=(1, 2, 3))

        return strength(mirror_image(stego)) > strength(stego)

    def base_means(self, stego: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, N, N) -> (B, K*C, N/8, N/8): the secrets' 8x8 block means as the base code tells them (its gain
        undone by the pilot, the tile code inverted; unclamped). ``weight`` as in ``thumbnails``."""
        y = self.base_coefficients(stego)
        if weight is not None:
            y = y / F.avg_pool2d(weight, BASE_BLOCK)
        base, _ = _gain_corrected(y)
        return (self.tile.inverse(base) if self.tile is not None else base) + 0.5

    def thumbnails(
        self, stego: torch.Tensor, stego4: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, N, N) -> (B, K*C, N/4, N/4): the secrets' 4x4 block means as far as the codes tell them.

        ``stego4``: the stego already folded by 4, when the caller has it (saves a pass over the image). ``weight``
        (B, 1, N, N): the per-block weight the writer scaled the codes by (estimated from the stego), divided out."""
        means = F.interpolate(self.base_means(stego, weight), scale_factor=2, mode="bilinear", align_corners=False)
        stego4 = F.pixel_unshuffle(stego, DETAIL_BLOCK) if stego4 is None else stego4
        y = self.detail_coefficients(stego4)
        if weight is not None:
            y = y / F.avg_pool2d(weight, DETAIL_BLOCK)
        detail, g = _gain_corrected(y, PILOT / DETAIL_BOOST)
        gate = ((g - GATE_LO) / (GATE_HI - GATE_LO)).clamp(0, 1)
        d = detail.shape[1]
        return torch.cat([means[:, :d] + gate * detail, means[:, d:]], dim=1)

    def forward(self, stego: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        thumbs = self.thumbnails(stego, weight=weight)
        return F.interpolate(thumbs, scale_factor=DETAIL_BLOCK, mode="bilinear", align_corners=False)


class ThumbnailCode(nn.Module):
    """The thumbnail code as one part of a hiding model: ``writer`` (embed, ``ThumbnailWriter``) and ``reader``
    (reveal, ``ThumbnailReader``), built with the same amplitude, tile code and layout."""

    def __init__(self, writer: ThumbnailWriter, reader: ThumbnailReader) -> None:
        super().__init__()
        self.writer = writer
        self.reader = reader
