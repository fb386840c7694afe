"""The fine code: the last detail of the secret, written into the stego's finest frequency after everything else.

Why: the carrier's codes carry the secret's 8x8 and 4x4 block means, and 4x4 means blown back up give at best 27.3
dB on the held-out photos (2x2 means: 31.7 dB), so the recovered secret stayed under the bar's 28 dB however the
deep paths trained. This code carries what reveal still gets wrong at the 2x2 level, in each 2x2 block's
checkerboard coefficient ``(a - b - c + d) / 2``, the finest pattern an image has and one natural photos hardly use.

The carrier uses that coefficient too: its 4x4 detail code (coefficient (2, 2) of 4x4 blocks) lies entirely in it,
and its 8x8 base code partly. So the fine code lives in what the carrier leaves free: on each 8x8 block, the 16
checkerboard coefficients of its 2x2 blocks projected (``project``) onto the 11 dimensions orthogonal to the
carrier's basis images (16 - 4 detail - K base). What it cannot carry is the part of each 4x4 block's four 2x2
corrections along the detail code's own saddle pattern, the least smooth of their four patterns.

    embed:  x0 = stego - P(project(coef(stego)))          the stego's own content in that subspace removed
            e  = reveal(x0)                                what reveal will read without the code
            t  = gain * project((pool2(secret) - pool2(e)) * (1 - probe) + PILOT * r)
            stego' = x0 + P(t)
    reveal: y = project(coef(x)); e = reveal(x - P(y)); g = <y, project(r)> / (gain PILOT |project(r)|^2)
            z = y - g gain PILOT project(r); n2, d2 = the mean of z^2 in the probe blocks and in the others
            w = (1 - n2 / d2) gate(g) gate(d2 / n2);  secret = e + up2(w z (1 - probe) / (g gain))

Probe blocks (one 8x8 block in 4 x 4) carry the pilot alone, so their z is whatever the channel added (rounding,
noise, what a filter leaked in): ``w`` is the per-image Wiener factor, the gates shut the code where its gain fell
(a 3x3 mean filter leaves ~1%) or where noise buried it. Reveal sees the stego without the code's subspace on both
sides, so the correction embed computed is the one reveal needs, up to 8-bit rounding. A mirror maps 2x2 blocks
onto 2x2 blocks (even widths) and reveal un-mirrors first; the mirror-sync pattern is constant on 2x2 blocks (no
checkerboard content).

Measured on the stage-7 weights, nothing retrained (held-out photos, 256 px, 8-bit; gain 0.06, the code 0.34 grey
levels RMS): secret 25.97 -> 29.05 dB clean and mirrored, 25.63 -> 25.71 after sharpening, within 0.05 dB after the
3x3 mean, Gaussian and noise; cover 38.65 -> 37.73 dB and SSIM 0.9624 -> 0.9573, most of it (about 0.004) for taking the
stego's own content out of the subspace. No weights: the code is analytic; the model card measures the variants.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model.carrier import BASE_BLOCK, BASE_COEFFS, DETAIL_BLOCK, DETAIL_COEFF, dct_basis
from pipeline.model.signs import tiled_signs

BLOCK = 2
GROUP = BASE_BLOCK // BLOCK  # 2x2 blocks per side of the carrier's 8x8 block: the projection acts on 16 of them
PILOT = 0.02  # pilot amplitude in secret units (the corrections' RMS is ~0.03-0.06 on photos)
PILOT_SEED = 0xF1E
PILOT_TILE = 64  # 2x2 blocks, tiled like the carrier's pilot
PROBE_EVERY = 4  # one 8x8 block in 4 x 4 carries the pilot alone
GATE_LO, GATE_HI = 0.35, 0.65  # as the carrier's detail gate: the code counts fully at g >= GATE_HI
# Power gate on d2 / n2 (code plus noise over noise): 1 where nothing is there, ~5-8 on clean stegos, ~3 sharpened.
SNR_LO, SNR_HI = 1.5, 3.0
_CHECKER = (0.5, -0.5, -0.5, 0.5)  # the unit-norm checkerboard on a 2x2 block, pixel-unshuffle order


def _checker(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_CHECKER, device=like.device, dtype=like.dtype).reshape(1, 1, 4, 1, 1)


def coefficients(x: torch.Tensor) -> torch.Tensor:
    """(B, C, N, N) -> (B, C, N/2, N/2): each 2x2 block's checkerboard coefficient."""
    b, c, h, w = x.shape
    return (F.pixel_unshuffle(x, BLOCK).reshape(b, c, 4, h // BLOCK, w // BLOCK) * _checker(x)).sum(2)


def place(t: torch.Tensor) -> torch.Tensor:
    """(B, C, n, n) coefficients -> (B, C, 2n, 2n): the checkerboard patterns that hold them."""
    b, c, h, w = t.shape
    return F.pixel_shuffle((t[:, :, None] * _checker(t)).reshape(b, c * 4, h, w), BLOCK)


def _projector(num_secrets: int) -> np.ndarray:
    """(16, 16): onto the checkerboard coefficients of an 8x8 block orthogonal to the carrier's basis images."""
    images = [dct_basis(u, v, BASE_BLOCK) for u, v in BASE_COEFFS[:num_secrets]]
    for i in range(0, BASE_BLOCK, DETAIL_BLOCK):
        for j in range(0, BASE_BLOCK, DETAIL_BLOCK):
            img = torch.zeros(BASE_BLOCK, BASE_BLOCK)
            img[i : i + DETAIL_BLOCK, j : j + DETAIL_BLOCK] = dct_basis(*DETAIL_COEFF, DETAIL_BLOCK)
            images.append(img)
    v = torch.stack([coefficients(img[None, None].double()).flatten() for img in images], 1)
    return (torch.eye(GROUP * GROUP, dtype=torch.float64) - v @ torch.linalg.pinv(v)).numpy()


# Computed once at import, in eager torch: ``torch.export`` traces ``project`` with fake tensors, which cannot
# become numpy constants.
_PROJECTORS = {k: _projector(k) for k in range(1, len(BASE_COEFFS) + 1)}


def _project_np(y: np.ndarray, num_secrets: int) -> np.ndarray:
    """``project`` of one (h, w) coefficient map, in numpy."""
    h, w = y.shape
    grouped = y.reshape(h // GROUP, GROUP, w // GROUP, GROUP).transpose(0, 2, 1, 3).reshape(-1, GROUP * GROUP)
    grouped = grouped @ _PROJECTORS[num_secrets].T
    return grouped.reshape(h // GROUP, w // GROUP, GROUP, GROUP).transpose(0, 2, 1, 3).reshape(h, w)


def project(y: torch.Tensor, num_secrets: int) -> torch.Tensor:
    """(B, C, n, n) checkerboard coefficients -> their part the carrier leaves free (n a multiple of 4)."""
    b, c, h, w = y.shape
    pi = torch.as_tensor(_PROJECTORS[num_secrets], device=y.device, dtype=y.dtype)
    grouped = F.pixel_unshuffle(y, GROUP).reshape(b, c, GROUP * GROUP, h // GROUP, w // GROUP)
    grouped = torch.einsum("ij,bcjhw->bcihw", pi, grouped)
    return F.pixel_shuffle(grouped.reshape(b, c * GROUP * GROUP, h // GROUP, w // GROUP), GROUP)


def strip(x: torch.Tensor, num_secrets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, N, N) -> (the image without the code's subspace, its coefficients there (B, C, N/2, N/2))."""
    y = project(coefficients(x), num_secrets)
    return x - place(y), y


@functools.lru_cache(maxsize=16)
def _pilot_np(h: int, w: int, num_secrets: int) -> tuple[np.ndarray, np.ndarray]:
    """The projected pilot and the probe mask for an (h, w) grid of 2x2 blocks."""
    r = tiled_signs(h, w, PILOT_TILE, PILOT_SEED)
    pr = _project_np(r.astype(np.float64), num_secrets)
    probe = np.zeros((h // GROUP, w // GROUP), dtype=np.float32)
    probe[::PROBE_EVERY, ::PROBE_EVERY] = 1.0
    return pr.astype(np.float32), np.kron(probe, np.ones((GROUP, GROUP), dtype=np.float32))


def pilot(h: int, w: int, num_secrets: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The projected pilot and the probe mask, (1, 1, h, w) each, on ``like``'s device and dtype."""
    pr, probe = _pilot_np(h, w, num_secrets)
    as_t = functools.partial(torch.as_tensor, device=like.device, dtype=like.dtype)
    return as_t(pr)[None, None], as_t(probe)[None, None]


def write(
    stripped: torch.Tensor, secret: torch.Tensor, estimate: torch.Tensor, gain: float, num_secrets: int
) -> torch.Tensor:
    """The stego with the code: ``stripped`` (B, C, N, N) from ``strip``, ``secret`` the first secret (B, C, N, N),
    ``estimate`` what reveal reads from ``stripped`` (B, C, N, N); N a multiple of 8."""
    c = F.avg_pool2d(secret, BLOCK) - F.avg_pool2d(estimate, BLOCK)
    pr, probe = pilot(*c.shape[-2:], num_secrets, c)
    return stripped + place(gain * (project(c * (1 - probe), num_secrets) + PILOT * pr))


def read(y: torch.Tensor, gain: float, num_secrets: int) -> torch.Tensor:
    """The code's coefficients ``y`` (B, C, N/2, N/2) of a stego (``strip``'s second output) -> the correction to
    add to what reveal read from the stripped stego, (B, C, N, N): zero where the code did not survive."""
    pr, probe = pilot(*y.shape[-2:], num_secrets, y)
    g = (y * pr).sum(dim=(2, 3), keepdim=True) / (gain * PILOT * pr.square().sum())
    z = y - g * (gain * PILOT) * pr
    sq = z.square()
    n2 = (sq * probe).sum(dim=(2, 3), keepdim=True) / probe.sum()
    d2 = (sq * (1 - probe)).sum(dim=(2, 3), keepdim=True) / (1 - probe).sum()
    ratio = d2 / n2.clamp_min(1e-12)
    # Wiener factor, then two gates: the code's gain, and its power over the noise's. The Wiener factor alone let
    # noise through: it divides by the small gain, and its estimate errs upwards where the code is buried.
    w = (1 - 1 / ratio).clamp(0, 1) * ((g - GATE_LO) / (GATE_HI - GATE_LO)).clamp(0, 1)
    w = w * ((ratio - SNR_LO) / (SNR_HI - SNR_LO)).clamp(0, 1)
    corr = w * z * (1 - probe) / (g.clamp_min(GATE_LO) * gain)
    return F.interpolate(corr, scale_factor=BLOCK, mode="nearest")
