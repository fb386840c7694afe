"""Blind deblurring before reveal: measure how far a blur attenuated the thumbnail code's pilots, and undo it.

Why: after a 3x3 mean or Gaussian filter the learned reveal path reads a blurred stego, and its local convolutions
cannot invert a blur whose strength they do not know. The thumbnail code's pilots measure that strength: their
correlations fall as the blur grows.

Model of the attack: the separable symmetric 3x3 kernel ``[a, 1 - 2a, a]`` on each axis (``a = 1/3`` is the 3x3
mean, 0.107 / 0.274 / 0.307 / 0.319 the 3x3 Gaussians of sigma 0.5 / 1 / 1.5 / 2), frequency response
``h(wy) h(wx)``, ``h(w) = 1 - 2a (1 - cos w)``. Estimate: the detail pilot's gain over its clean value, inverted
through a curve ``rho(a)`` measured on the model's own code (``calibrate``: the trained code is no longer a textbook
DCT basis), gives ``a``; an image whose detail pilot is intact passes untouched. JPEG also removes the detail pilot
but not the base one, so where the base pilot is stronger than that blur would leave, the estimate fades to 0.
Undo: the Wiener filter ``H / (H^2 + EPS)`` in the Fourier domain after reflect padding, unit gain at DC.

Both gains are linear in the image, so each is one inner product with a precomputed map, taken for the image and
its mirror (the orientation with the stronger base pilot is the stego's own). This runs before the exported reveal
graph (``HidingModel.restore``); the engines run it in torch before their reveal, so every backend agrees.
Measurements (EPS, gains): ``pipeline/weights/MODEL_CARD_analog.md`` and ``docs/history.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.model.codes import residual
from pipeline.model.codes.thumbnail import (
    DETAIL_BLOCK,
    PILOT,
    CodeLayout,
    ThumbnailReader,
    ThumbnailWriter,
    pilot_gain,
)
from pipeline.model.codes.thumbnail import DETAIL_BOOST as _BOOST

EPS = 0.003  # Wiener regularisation (measured 0.001-0.025 above; the model card adds 0.0003 and 0.015)
RHO_CLEAN = 0.9  # above this the stego counts as unfiltered (noise sigma 5 moves rho4 by ~0.05)
# rho8 over what the estimated blur leaves of it: 0.85-1.3 after the family's blurs (the base pilot's reading has some
# cover leakage), 2-3 after JPEG. Full estimate up to CONSISTENT_LO, none from CONSISTENT_HI, linear between.
CONSISTENT_LO, CONSISTENT_HI = 1.4, 1.8
A_GRID = tuple(i / 100 for i in range(41))  # 0 .. 0.40; the mean filter is 0.333
# Reflect padding before the FFT: at EPS 0.003 the inverse of the 3x3 mean rings past 16 px (a 128 px test photo
# restored to 32.7 dB with 16, 37.9 with 32; the held-out secret after the mean filter +0.01 dB).
PAD = 32
CALIBRATION_SIZE = 128


def blur_kernel(a: float) -> torch.Tensor:
    """The 3x3 kernel ``[a, 1 - 2a, a]`` outer itself."""
    k = torch.tensor([a, 1 - 2 * a, a], dtype=torch.float64)
    return torch.outer(k, k).float()


def _blur(x: torch.Tensor, a: float) -> torch.Tensor:
    c = x.shape[1]
    k = blur_kernel(a).to(x)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k.expand(c, 1, 3, 3), groups=c)


def pilot_gains(reader: ThumbnailReader, x: torch.Tensor) -> torch.Tensor:
    """The (detail, base) pilots' gains in an un-mirrored stego (B, C, N, N) -> (B, 2), unclamped, mean over
    channels (and secrets)."""
    gd = pilot_gain(reader.detail_coefficients(F.pixel_unshuffle(x, DETAIL_BLOCK)), PILOT / _BOOST)
    gb = pilot_gain(reader.pilot_coefficients(x), PILOT)
    return torch.stack([gd.mean(dim=(1, 2, 3)), gb.mean(dim=(1, 2, 3))], dim=1)


@dataclass(frozen=True)
class Calibration:
    """The (detail, base) pilot gains' ratios ``rho4``, ``rho8`` at each blur ``a`` (``rho4`` decreasing) for one
    model's thumbnail code; ``clean``: the two gains of an unfiltered stego."""

    a: tuple[float, ...]
    rho4: tuple[float, ...]
    rho8: tuple[float, ...]
    clean: tuple[float, float]


@torch.no_grad()
def calibrate(writer: ThumbnailWriter, reader: ThumbnailReader, layout: CodeLayout, with_residual: bool) -> Calibration:
    """Measure ``rho(a)`` on a flat grey image carrying only the codes' pilots (no content: no noise in the gains)."""
    w = reader.detail_read.weight
    n, c = CALIBRATION_SIZE, reader.channels
    grey = torch.full((1, c, n, n), 0.5, device=w.device, dtype=w.dtype)
    stego = grey + writer(grey, grey.repeat(1, layout.num_secrets, 1, 1))
    probe = (lambda x: residual.strip(x, layout)[0]) if with_residual else (lambda x: x)
    g = torch.cat([pilot_gains(reader, probe(_blur(stego, a) if a else stego)) for a in A_GRID]).float()
    rho = g / g[0]
    # Keep the grid while rho4 still falls: past that point a larger blur is indistinguishable.
    r4 = rho[:, 0].tolist()
    last = next((i for i in range(1, len(r4)) if r4[i] >= r4[i - 1] - 1e-4), len(r4))
    return Calibration(A_GRID[:last], tuple(r4[:last]), tuple(rho[:last, 1].tolist()), tuple(g[0].tolist()))


def _interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``ys(x)`` for increasing ``xs``, clamped at both ends."""
    x = x.clamp(xs[0], xs[-1])
    i = torch.searchsorted(xs, x.contiguous()).clamp(1, len(xs) - 1)
    t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]).clamp_min(1e-12)
    return ys[i - 1] + t * (ys[i] - ys[i - 1])


def estimate(rho4: torch.Tensor, rho8: torch.Tensor, cal: Calibration) -> torch.Tensor:
    """The gains' ratios (B,) -> the blur parameter ``a`` (B,): the detail curve inverted, 0 for ``rho4 >=
    RHO_CLEAN``, faded out where the base pilot survived better than that blur would let it (JPEG)."""
    like = dict(device=rho4.device, dtype=rho4.dtype)
    a_grid = torch.tensor(cal.a, **like)
    a = _interp(rho4, torch.tensor(cal.rho4[::-1], **like), a_grid.flip(0))
    expected8 = _interp(a, a_grid, torch.tensor(cal.rho8, **like))
    consistent = ((CONSISTENT_HI - rho8 / expected8) / (CONSISTENT_HI - CONSISTENT_LO)).clamp(0, 1)
    return torch.where(rho4 >= RHO_CLEAN, torch.zeros_like(a), a * consistent)


def wiener(x: torch.Tensor, a: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Undo the blur ``a`` (B,) of each image of ``x`` (B, C, H, W), float32; images with ``a == 0`` pass unchanged."""
    xp = F.pad(x, (PAD,) * 4, mode="reflect")
    hh, ww = xp.shape[-2:]
    wy = 2 * torch.pi * torch.fft.fftfreq(hh, device=x.device)
    wx = 2 * torch.pi * torch.fft.rfftfreq(ww, device=x.device)
    av = a.reshape(-1, 1, 1)
    h = (1 - 2 * av * (1 - torch.cos(wy))[None, :, None]) * (1 - 2 * av * (1 - torch.cos(wx))[None, None, :])
    g = h / (h * h + eps) * (1 + eps)  # unit gain at DC (h = 1 there)
    out = torch.fft.irfft2(torch.fft.rfft2(xp) * g[:, None], s=(hh, ww))[..., PAD:-PAD, PAD:-PAD]
    return torch.where((a > 0).reshape(-1, 1, 1, 1), out, x)


class Deblur:
    """The restore stage of a model with ``config.deblur``: stego (B, C, N, N) -> stego with a detected blur undone.

    Holds the model's thumbnail code (its reader measures the pilots, its writer calibrates). Each pilot's gain is
    linear in the image, so it is one inner product with a map (the gain's gradient), taken for the image and for its
    mirror; the orientation whose base pilot is stronger is the stego's own (a mirrored pilot reads as noise, and the
    base pilot keeps a good part of its gain even after a 3x3 mean filter). No un-mirroring or stripping pass over the
    image. Maps and calibration are made on first use and kept until ``forget``.
    """

    def __init__(
        self, writer: ThumbnailWriter, reader: ThumbnailReader, layout: CodeLayout, with_residual: bool
    ) -> None:
        self.writer, self.reader = writer, reader
        self.layout, self.with_residual = layout, with_residual
        self._cal: Calibration | None = None
        self._maps: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def calibration(self) -> Calibration:
        if self._cal is None:
            self._cal = calibrate(self.writer, self.reader, self.layout, self.with_residual)
        return self._cal

    def gain_maps(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(maps (2, C, h, w), offsets (2,)): the (detail, base) pilot gains of an un-mirrored (h, w) stego x are
        ``<x, maps[i]> + offsets[i]``."""
        key = (h, w, str(device))
        if key not in self._maps:
            with torch.inference_mode(False), torch.enable_grad():
                w_ = self.reader.detail_read.weight
                z = torch.zeros(1, self.reader.channels, h, w, device=device, dtype=w_.dtype, requires_grad=True)
                g = pilot_gains(self.reader, residual.strip(z, self.layout)[0] if self.with_residual else z)[0]
                grads = [torch.autograd.grad(g[i], z, retain_graph=True)[0][0] for i in range(2)]
            self._maps[key] = (torch.stack(grads).float().detach(), g.detach().float())
        return self._maps[key]

    @torch.no_grad()
    def blur_of(self, stego: torch.Tensor, oriented: bool = False) -> torch.Tensor:
        """The estimated blur parameter ``a`` (B,) of each stego (0: none detected); ``oriented``: the stegos are
        known to be in their embedded orientation (registration decided it), so the mirror is not looked at."""
        maps, offsets = self.gain_maps(*stego.shape[-2:], stego.device)
        x = stego.float()
        g = torch.einsum("bchw,schw->bs", x, maps) + offsets  # (B, 2) as written
        if not oriented:
            gm = torch.einsum("bchw,schw->bs", x, maps.flip(-1)) + offsets  # (B, 2) if mirrored
            g = torch.where((gm[:, 1] > g[:, 1])[:, None], gm, g)  # the orientation of the stronger base pilot
        cal = self.calibration
        return estimate(g[:, 0] / cal.clean[0], g[:, 1] / cal.clean[1], cal)

    def __call__(self, stego: torch.Tensor, oriented: bool = False) -> torch.Tensor:
        """Differentiable in ``stego`` through the Wiener filter (training), not through the blur's estimate;
        ``oriented`` as in ``blur_of``."""
        a = self.blur_of(stego, oriented)
        if not bool((a > 0).any()):
            return stego
        return wiener(stego.float(), a).to(stego.dtype)
