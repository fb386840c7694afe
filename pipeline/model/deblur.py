"""Blind deblurring before reveal: measure how far a blur attenuated the carrier's detail pilot, and undo the blur.

Why: after a 3x3 mean or Gaussian filter the deep reveal path reads a blurred stego, and nothing in its local
convolutions can invert a blur whose strength it does not know. The carrier already measures that strength: its
4x4 detail code carries a known +-1 pilot whose correlation ``g`` falls as the blur grows (``carrier.py``). So
reveal can estimate the filter from ``g`` and undo it first. Measured on the held-out photos with stage 8's
blur-mix weights, untrained for it (secret PSNR at 256 px after the attack, without -> with): 3x3 mean 22.5 -> 23.5,
Gaussian sigma 1 23.1 -> 23.3, sigma 0.5 23.9 -> 25.3, sigma 1.5 22.8 -> 23.4 dB, clean unchanged.

Model of the attack: the separable symmetric 3x3 kernel ``[a, 1 - 2a, a]`` on each axis: ``a = 1/3`` is the 3x3 mean
filter, 0.107 / 0.274 / 0.307 the 3x3 Gaussians of sigma 0.5 / 1 / 1.5 (any 3x3 kernel that is symmetric, separable
and sums to 1 is one of them). Its frequency response is ``h(wy) h(wx)`` with ``h(w) = 1 - 2a (1 - cos w)``.

Estimate: ``rho = g / g_clean``. The trained detail code is no longer the textbook DCT basis, so ``rho(a)`` is not
``(1 - 2a)^2``: it is measured from the model's own carrier on a flat image filtered with each ``a`` of a grid
(``calibrate``; on 8 held-out photos the measured ``rho`` agreed with this curve within 0.006 for every ``a``).
The inverse of the curve gives ``a``; ``rho >= RHO_CLEAN`` counts as unfiltered (``a = 0``: the image is returned
untouched), so clean and noisy stegos are read exactly as before. A sharpened stego (``rho > 1``) is left alone too.

Undo: the Wiener filter ``H / (H^2 + EPS)`` in the Fourier domain after reflect padding (what OpenCV's filters pad
with), scaled to unit gain at DC. EPS = 0.01 was best of 0.003 / 0.01 / 0.03 / 0.1 on the mean filter.

This runs before the exported reveal graph (``HidingModel.restore``): the compiled engines run it in torch on the
CPU before their reveal (``pipeline/runtime``), so all backends give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.model import fine
from pipeline.model.carrier import DETAIL_BLOCK, PILOT, CarrierReader, CarrierWriter, pilot
from pipeline.model.carrier import DETAIL_BOOST as _BOOST

EPS = 0.01
RHO_CLEAN = 0.9  # above this the stego counts as unfiltered (noise sigma 5 moves rho by ~0.05)
A_GRID = tuple(i / 100 for i in range(41))  # 0 .. 0.40; the mean filter is 0.333
PAD = 16  # reflect padding before the FFT: the Wiener kernel's tails are within 8 px for the grid's filters
CALIBRATION_SIZE = 128


def blur_kernel(a: float) -> torch.Tensor:
    """The 3x3 kernel ``[a, 1 - 2a, a]`` outer itself."""
    k = torch.tensor([a, 1 - 2 * a, a], dtype=torch.float64)
    return torch.outer(k, k).float()


def _blur(x: torch.Tensor, a: float) -> torch.Tensor:
    c = x.shape[1]
    k = blur_kernel(a).to(x)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k.expand(c, 1, 3, 3), groups=c)


def pilot_gain(reader: CarrierReader, x: torch.Tensor) -> torch.Tensor:
    """The detail pilot's correlation in an un-mirrored stego (B, C, N, N) -> (B,), unclamped, channel mean."""
    y = reader.detail_read(F.pixel_unshuffle(x, DETAIL_BLOCK)) * reader.detail_scale
    r = pilot(*y.shape[-2:], y)
    return ((y * r).mean(dim=(2, 3)) / (PILOT / _BOOST)).mean(dim=1)


@dataclass(frozen=True)
class Calibration:
    """``rho`` (decreasing) at ``a`` for one model's carrier; ``g_clean``: the pilot gain of an unfiltered stego."""

    a: tuple[float, ...]
    rho: tuple[float, ...]
    g_clean: float


@torch.no_grad()
def calibrate(writer: CarrierWriter, reader: CarrierReader, num_secrets: int, fine_code: bool) -> Calibration:
    """Measure ``rho(a)`` on a flat grey image carrying only the codes' pilots (no content: no noise in ``g``)."""
    w = reader.detail_read.weight
    n, c = CALIBRATION_SIZE, reader.channels
    grey = torch.full((1, c, n, n), 0.5, device=w.device, dtype=w.dtype)
    stego = grey + writer(grey, grey.repeat(1, num_secrets, 1, 1))
    probe = (lambda x: fine.strip(x, num_secrets)[0]) if fine_code else (lambda x: x)
    g = [pilot_gain(reader, probe(_blur(stego, a) if a else stego)).item() for a in A_GRID]
    rho = [v / g[0] for v in g]
    # Keep the grid while rho still falls: past that point a larger blur is indistinguishable.
    last = next((i for i in range(1, len(rho)) if rho[i] >= rho[i - 1] - 1e-4), len(rho))
    return Calibration(A_GRID[:last], tuple(rho[:last]), g[0])


def estimate(rho: torch.Tensor, cal: Calibration) -> torch.Tensor:
    """``rho`` (B,) -> the blur parameter ``a`` (B,): the calibration curve inverted, 0 for ``rho >= RHO_CLEAN``."""
    r = torch.tensor(cal.rho[::-1], device=rho.device, dtype=rho.dtype)  # increasing
    a = torch.tensor(cal.a[::-1], device=rho.device, dtype=rho.dtype)
    x = rho.clamp(r[0], r[-1])
    i = torch.searchsorted(r, x).clamp(1, len(r) - 1)
    t = (x - r[i - 1]) / (r[i] - r[i - 1]).clamp_min(1e-12)
    est = a[i - 1] + t * (a[i] - a[i - 1])
    return torch.where(rho >= RHO_CLEAN, torch.zeros_like(est), est)


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

    Holds the model's carrier (its reader measures the pilot, its writer calibrates). The pilot's gain is linear in
    the image, so it is measured as one inner product with a map (the gradient of the gain), taken for the image and
    its mirror, the larger kept: no un-mirroring and no stripping pass over the image (they cost 2x the rest). A
    mirrored stego's pilot is uncorrelated with the unmirrored one (its gain there is noise, below 0.02 of the
    clean gain), so the larger is the right one except after the strongest blurs, where both are near zero and
    give the same estimate. Maps and calibration are made on first use and kept until ``forget``.
    """

    def __init__(self, writer: CarrierWriter, reader: CarrierReader, num_secrets: int, fine_code: bool) -> None:
        self.writer, self.reader = writer, reader
        self.k, self.fine_code = num_secrets, fine_code
        self._cal: Calibration | None = None
        self._maps: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def forget(self) -> None:
        """Drop the calibration and the maps (training: the carrier's weights moved)."""
        self._cal = None
        self._maps.clear()

    @property
    def calibration(self) -> Calibration:
        if self._cal is None:
            self._cal = calibrate(self.writer, self.reader, self.k, self.fine_code)
        return self._cal

    def gain_map(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(map (C, h, w), offset ()): the pilot gain of an un-mirrored (h, w) stego x is ``<x, map> + offset``."""
        key = (h, w, str(device))
        if key not in self._maps:
            with torch.inference_mode(False), torch.enable_grad():
                w_ = self.reader.detail_read.weight
                z = torch.zeros(1, self.reader.channels, h, w, device=device, dtype=w_.dtype, requires_grad=True)
                g = pilot_gain(self.reader, fine.strip(z, self.k)[0] if self.fine_code else z).sum()
                (grad,) = torch.autograd.grad(g, z)
            self._maps[key] = (grad[0].float().detach(), g.detach().float())
        return self._maps[key]

    @torch.no_grad()
    def blur_of(self, stego: torch.Tensor) -> torch.Tensor:
        """The estimated blur parameter ``a`` (B,) of each stego (0: none detected)."""
        gmap, offset = self.gain_map(*stego.shape[-2:], stego.device)
        x = stego.float()
        g = torch.maximum((x * gmap).sum(dim=(1, 2, 3)), (x * gmap.flip(-1)).sum(dim=(1, 2, 3))) + offset
        return estimate(g / self.calibration.g_clean, self.calibration)

    def __call__(self, stego: torch.Tensor) -> torch.Tensor:
        """Differentiable in ``stego`` through the Wiener filter (training), not through the blur's estimate."""
        a = self.blur_of(stego)
        if not bool((a > 0).any()):
            return stego
        return wiener(stego.float(), a).to(stego.dtype)
