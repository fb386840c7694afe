"""The residual code: what reveal still misses at the 2x2-block level, written into the stego's finest frequency.

Why: the thumbnail code carries the secret's 8x8 and 4x4 block means, and 4x4 means blown back up cap the recovered
secret below what a clean channel allows. This code carries the difference between the secret's 2x2 means and what
reveal reads from the rest of the stego, in each 2x2 block's checkerboard coefficient ``(a - b - c + d) / 2``, the
finest pattern an image has and one natural photos hardly use. It lives in the D = 11 dimensions per 8x8 block of
those coefficients that are orthogonal to the thumbnail code's basis images:

    embed:  u = B stego;  x0 = stego - B^T u               the stego's own content in that subspace removed
            e  = reveal(x0)                                what reveal will read without the code
            t  = gain * (M (secret - e) * (1 - probe) + PILOT * Br)    M: pixels -> coordinates of their 2x2 means
            stego' = x0 + B^T t                            Br: the pilot, +-1 checkerboards, in coordinates
    reveal: u = B x; e = reveal(x - B^T u); g = <u, Br> / (gain PILOT |Br|^2)
            z = u - g gain PILOT Br; n2, d2 = the mean of z^2 in the probe blocks and in the others
            w = (1 - n2 / d2) gate(g) gate(d2 / n2);  secret = e + S(w z (1 - probe) / (g gain))

Probe blocks (one 8x8 block in 4 x 4) carry the pilot alone, so ``w`` is a per-image Wiener factor and the gates
shut the code where a filter removed it or noise buried it: it pays on a lossless channel (clean, mirrored,
sharpened) and steps aside elsewhere. Every step is a 1x1 convolution on the 8x8-folded image (``strip``, ``write``,
``read``); no weights. Measurements: ``pipeline/weights/MODEL_CARD_analog.md`` and ``docs/history.md``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model.codes.layout import BASE_BLOCK, DETAIL_BLOCK, CodeLayout
from pipeline.model.codes.signs import tiled_signs
from pipeline.model.codes.thumbnail import dct_basis

BLOCK = 2
GROUP = BASE_BLOCK // BLOCK  # 2x2 blocks per side of the thumbnail code's 8x8 block: the projection acts on 16 of them
PILOT = 0.02  # pilot amplitude in secret units (the corrections' RMS is ~0.03-0.06 on photos)
PILOT_SEED = 0xF1E
PILOT_TILE = 64  # 2x2 blocks, tiled like the thumbnail code's pilot
PROBE_EVERY = 4  # one 8x8 block in 4 x 4 carries the pilot alone
GATE_LO, GATE_HI = 0.35, 0.65  # as the thumbnail code's detail gate: the code counts fully at g >= GATE_HI
# Power gate on d2 / n2 (code plus noise over noise): 1 where nothing is there, ~5-8 on clean stegos, ~3 sharpened.
SNR_LO, SNR_HI = 1.5, 3.0
_CHECKER = (0.5, -0.5, -0.5, 0.5)  # the unit-norm checkerboard on a 2x2 block, pixel-unshuffle order


def _checker(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_CHECKER, device=like.device, dtype=like.dtype).reshape(1, 1, 4, 1, 1)


def coefficients(x: torch.Tensor) -> torch.Tensor:
    """(B, C, N, N) -> (B, C, N/2, N/2): each 2x2 block's checkerboard coefficient."""
    b, c, h, w = x.shape
    return (F.pixel_unshuffle(x, BLOCK).reshape(b, c, 4, h // BLOCK, w // BLOCK) * _checker(x)).sum(2)


def _projector(layout: CodeLayout) -> np.ndarray:
    """(16, 16): onto the checkerboard coefficients of an 8x8 block orthogonal to the thumbnail code's basis images."""
    images = [dct_basis(u, v, BASE_BLOCK) for u, v in layout.base]
    for coeff in layout.detail:
        for i in range(0, BASE_BLOCK, DETAIL_BLOCK):
            for j in range(0, BASE_BLOCK, DETAIL_BLOCK):
                img = torch.zeros(BASE_BLOCK, BASE_BLOCK)
                img[i : i + DETAIL_BLOCK, j : j + DETAIL_BLOCK] = dct_basis(*coeff, DETAIL_BLOCK)
                images.append(img)
    v = torch.stack([coefficients(img[None, None].double()).flatten() for img in images], 1)
    return (torch.eye(GROUP * GROUP, dtype=torch.float64) - v @ torch.linalg.pinv(v)).numpy()


# Cached per layout, and first computed in eager torch and numpy when the model's config is checked
# (``ModelConfig.__post_init__`` asks for ``dims``): ``torch.export`` traces the model with fake tensors, which cannot
# become constants.
@functools.cache
def _maps(layout: CodeLayout) -> dict[str, np.ndarray]:
    """The code as linear maps on one 8x8 block of one channel (pixels in pixel-unshuffle order, dy * 8 + dx):

    ``basis`` (D, 64): orthonormal pixel patterns of the free subspace (D = ``dims``), ``means`` (D, 64): pixels ->
    the subspace coordinates of their 2x2 means, ``spread`` (64, D): coordinates -> 2x2 means copied to their pixels.
    Everything at the 8x8-block grid: one fold and 1x1 convolutions instead of passes over the full-size image.
    """
    pi = _projector(layout)
    vals, vecs = np.linalg.eigh(pi)
    q = vecs[:, vals > 0.5]  # (16, D): orthonormal coordinates of the subspace, in checkerboard coefficients
    place_np = np.zeros((BASE_BLOCK * BASE_BLOCK, GROUP * GROUP))  # coefficients -> pixels (checkerboard)
    copy_np = np.zeros((BASE_BLOCK * BASE_BLOCK, GROUP * GROUP))  # 2x2 values -> their 4 pixels
    for k in range(GROUP * GROUP):
        by, bx = divmod(k, GROUP)
        for t, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            pixel = (BLOCK * by + dy) * BASE_BLOCK + BLOCK * bx + dx
            place_np[pixel, k] = _CHECKER[t]
            copy_np[pixel, k] = 1.0
    return {"basis": (place_np @ q).T, "means": q.T @ copy_np.T / 4, "spread": copy_np @ q}


def _maps_of(layout: CodeLayout | int) -> dict[str, np.ndarray]:
    """The maps of a layout, or of ``CodeLayout.of(K)`` for an int K (the first secret's detail code only)."""
    return _maps(CodeLayout.of(layout) if isinstance(layout, int) else layout)


def dims(layout: CodeLayout | int) -> int:
    """D: the code's coordinates per 8x8 block and channel (16 checkerboard coefficients less the thumbnail code's
    components there); 0 where the thumbnail code leaves no room (four secrets with four detail coefficients)."""
    return _maps_of(layout)["basis"].shape[0]


def _apply(x8: torch.Tensor, m: np.ndarray, channels: int) -> torch.Tensor:
    """A per-channel map ``m`` (out, in) as a grouped 1x1 convolution on (B, C*in, h, w) -> (B, C*out, h, w)."""
    w = torch.as_tensor(m, device=x8.device, dtype=x8.dtype)[..., None, None].repeat(channels, 1, 1, 1)
    return F.conv2d(x8, w, groups=channels)


def strip(x: torch.Tensor, layout: CodeLayout | int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, N, N) -> (the image without the code's subspace, its coordinates there (B, C*D, N/8, N/8))."""
    c, maps = x.shape[1], _maps_of(layout)
    u = _apply(F.pixel_unshuffle(x, BASE_BLOCK), maps["basis"], c)
    return x - F.pixel_shuffle(_apply(u, maps["basis"].T, c), BASE_BLOCK), u


@functools.lru_cache(maxsize=16)
def _pilot_np(h: int, w: int, layout: CodeLayout | int) -> tuple[np.ndarray, np.ndarray]:
    """The pilot's coordinates (D, h, w) and the probe mask (1, h, w) for an (h, w) grid of 8x8 blocks."""
    r = tiled_signs(GROUP * h, GROUP * w, PILOT_TILE, PILOT_SEED).astype(np.float64)  # one sign per 2x2 block
    pixels = np.kron(r, np.reshape(_CHECKER, (BLOCK, BLOCK)))  # as checkerboards
    blocks = pixels.reshape(h, BASE_BLOCK, w, BASE_BLOCK).transpose(1, 3, 0, 2).reshape(BASE_BLOCK**2, h, w)
    pc = np.einsum("dp,phw->dhw", _maps_of(layout)["basis"], blocks)
    probe = np.zeros((1, h, w))
    probe[:, ::PROBE_EVERY, ::PROBE_EVERY] = 1.0
    return pc.astype(np.float32), probe.astype(np.float32)


def pilot(h: int, w: int, layout: CodeLayout | int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pilot's coordinates (1, 1, D, h, w) and the probe mask (1, 1, 1, h, w) for an (h, w) grid of 8x8 blocks,
    on ``like``'s device and dtype."""
    pc, probe = _pilot_np(h, w, layout)
    as_t = functools.partial(torch.as_tensor, device=like.device, dtype=like.dtype)
    return as_t(pc)[None, None], as_t(probe)[None, None]


def carried(diff: torch.Tensor, layout: CodeLayout | int) -> torch.Tensor:
    """(B, C, N, N) -> the coordinates (B, C, D, N/8, N/8) of what the code carries of ``diff``: its 2x2 means in
    the free subspace, zero in the probe blocks."""
    b, c, h, w = diff.shape
    u = _apply(F.pixel_unshuffle(diff, BASE_BLOCK), _maps_of(layout)["means"], c)
    u = u.reshape(b, c, -1, h // BASE_BLOCK, w // BASE_BLOCK)
    return u * (1 - pilot(h // BASE_BLOCK, w // BASE_BLOCK, layout, u)[1])


def spread(u: torch.Tensor, layout: CodeLayout | int) -> torch.Tensor:
    """Coordinates (B, C, D, n, n) -> the 2x2 means they hold, as an image (B, C, 8n, 8n)."""
    b, c, d, h, w = u.shape
    return F.pixel_shuffle(_apply(u.reshape(b, c * d, h, w), _maps_of(layout)["spread"], c), BASE_BLOCK)


def write(
    stripped: torch.Tensor, secret: torch.Tensor, estimate: torch.Tensor, gain: float, layout: CodeLayout | int
) -> torch.Tensor:
    """The stego with the code: ``stripped`` (B, C, N, N) from ``strip``, ``secret`` the first secret (B, C, N, N),
    ``estimate`` what reveal reads from ``stripped`` (B, C, N, N); N a multiple of 8."""
    b, c, h, w = stripped.shape
    u = carried(secret - estimate, layout)
    u = gain * (u + PILOT * pilot(h // BASE_BLOCK, w // BASE_BLOCK, layout, u)[0])
    code = _apply(u.reshape(b, -1, h // BASE_BLOCK, w // BASE_BLOCK), _maps_of(layout)["basis"].T, c)
    return stripped + F.pixel_shuffle(code, BASE_BLOCK)


def read(u: torch.Tensor, gain: float, layout: CodeLayout | int) -> torch.Tensor:
    """The code's coordinates ``u`` (B, C*D, N/8, N/8) of a stego (``strip``'s second output) -> the correction to
    add to what reveal read from the stripped stego, (B, C, N, N): zero where the code did not survive."""
    b, _, h, w = u.shape
    pc, probe = pilot(h, w, layout, u)
    u = u.reshape(b, -1, pc.shape[2], h, w)
    g = (u * pc).sum(dim=(2, 3, 4), keepdim=True) / (gain * PILOT * pc.square().sum())
    z = u - g * (gain * PILOT) * pc
    sq = z.square().mean(dim=2, keepdim=True)
    n2 = (sq * probe).sum(dim=(3, 4), keepdim=True) / probe.sum()
    d2 = (sq * (1 - probe)).sum(dim=(3, 4), keepdim=True) / (1 - probe).sum()
    ratio = d2 / n2.clamp_min(1e-12)
    # Wiener factor, then two gates: the code's gain, and its power over the noise's. The Wiener factor alone let
    # noise through: it divides by the small gain, and its estimate errs upwards where the code is buried.
    wiener = (1 - 1 / ratio).clamp(0, 1) * ((g - GATE_LO) / (GATE_HI - GATE_LO)).clamp(0, 1)
    wiener = wiener * ((ratio - SNR_LO) / (SNR_HI - SNR_LO)).clamp(0, 1)
    return spread(wiener * z * (1 - probe) / (g.clamp_min(GATE_LO) * gain), layout)


class ResidualCode:
    """The residual code as one part of a hiding model with C = ``channels`` and the thumbnail code's ``layout``: it
    carries what reveal misses of the first secret, at ``gain`` (no weights)."""

    def __init__(self, gain: float, layout: CodeLayout, channels: int) -> None:
        self.gain, self.layout, self.channels = gain, layout, channels

    def strip(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``strip``: (B, C, N, N) -> (the image without the code's subspace, its coordinates there)."""
        return strip(x, self.layout)

    def write(self, stripped: torch.Tensor, secrets: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
        """The stego with the code: ``stripped`` (B, C, N, N) from ``strip``, ``secrets`` (B, K*C, N, N), ``read``
        what reveal reads from ``stripped`` (B, K*C, N, N), unclamped; the code carries the first secret."""
        c = self.channels
        return write(stripped, secrets[:, :c], read[:, :c].clamp(0, 1), self.gain, self.layout)

    def add(self, secrets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Add the code's correction, read from its coordinates ``y`` (``strip``), to the first secret of
        ``secrets`` (B, K*C, N, N)."""
        c = self.channels
        first = secrets[:, :c] + read(y, self.gain, self.layout)
        return torch.cat([first, secrets[:, c:]], dim=1) if secrets.shape[1] > c else first
