"""Registration before reveal: find where the thumbnail code's 8x8 grid lies in a shifted or cropped stego, and how
strongly the image carries the code at all (the detection score).

Why: the thumbnail code is written on a fixed 8x8 block grid, so a stego that lost a few rows or columns (a crop, a
shift) is read on the wrong grid and the secret is lost. Its base pilot, a known +-1 sign per block, says where the
grid is: correlated with the pilot at the right offset, the base coefficients give a large statistic; at any other
offset, and in an image that holds no code, they give noise.

Search: the base code's read map as one 8x8 convolution at stride 1 gives the coefficients at every pixel phase; for
each hypothesis of translation d = (dy, dx) (content moved up and left by d pixels, ``SHIFTS`` per axis) and
orientation (as is, or mirrored), the phase ``(-d) mod 8`` and the block offset ``(d + phase) / 8`` pick the
coefficients and the pilot signs they should carry. The statistic of a hypothesis is

    z = sum_blocks(Y s) / sqrt(sum_blocks(Y^2))    Y: the coefficients summed over channels; N(0, 1) if no code

and the best hypothesis wins, unless the identity is within ``KEEP`` of it (an unshifted stego is read exactly as
before registration existed). The stego is then un-mirrored and moved back by d into the original frame, the rows
and columns it lost filled by replicating the edge: reveal gives the secret re-aligned to the original frame,
correct on the overlap. ``score`` (the best z) is the detection score; its threshold is calibrated on unmarked
photos (model card). No weights; runs before the exported reveal graph (``HidingModel.restore``), like the deblur.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.model.codes.mirror import mirror_image
from pipeline.model.codes.thumbnail import BASE_BLOCK, ThumbnailReader, pilot

# Translations searched per axis, in pixels (content moved up/left by d > 0, down/right by d < 0).
SHIFTS = range(-15, 16)
# The identity is kept unless the best hypothesis beats its statistic by more than this factor.
KEEP = 1.1


@dataclass(frozen=True)
class Alignment:
    """Per image of a batch: the detection score, whether it was mirrored, and the translation (dy, dx) found."""

    score: torch.Tensor  # (B,) float
    mirrored: torch.Tensor  # (B,) bool
    dy: torch.Tensor  # (B,) int64
    dx: torch.Tensor  # (B,) int64


def _hypotheses() -> list[tuple[int, int, int, int, int, int]]:
    """(dy, dx, phase y, phase x, block offset y, block offset x) for every translation in ``SHIFTS`` squared."""
    out = []
    for dy in SHIFTS:
        for dx in SHIFTS:
            py, px = (-dy) % BASE_BLOCK, (-dx) % BASE_BLOCK
            out.append((dy, dx, py, px, (dy + py) // BASE_BLOCK, (dx + px) // BASE_BLOCK))
    return out


HYPOTHESES = _hypotheses()
IDENTITY = HYPOTHESES.index((0, 0, 0, 0, 0, 0))


def _by_phase() -> dict[tuple[int, int], tuple[list[int], list[tuple[int, int]]]]:
    """The hypotheses grouped by pixel phase: (their indices, their block offsets)."""
    groups: dict[tuple[int, int], tuple[list[int], list[tuple[int, int]]]] = {}
    for i, (_, _, py, px, oy, ox) in enumerate(HYPOTHESES):
        index, offsets = groups.setdefault((py, px), ([], []))
        index.append(i)
        offsets.append((oy, ox))
    return groups


BY_PHASE = _by_phase()


@functools.lru_cache(maxsize=16)
def _sign_bank(gh: int, gw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pilot signs every hypothesis expects on a (gh, gw) grid of blocks, grouped by pixel phase: a bank (64,
    gh * gw, n) float32 (phase py * 8 + px, block, hypothesis of that phase; 0 where a block lies before the
    original's first, the content having moved down/right by a block or more, and in unused columns) and the
    hypotheses' indices (64, n) (-1 where unused). Built once per grid size, on the CPU, outside inference mode
    whatever the caller's: a cached inference tensor would break every later search that autograd records."""
    n = max(len(index) for index, _ in BY_PHASE.values())
    with torch.inference_mode(False):
        bank = torch.zeros(BASE_BLOCK**2, gh * gw, n)
        where = torch.full((BASE_BLOCK**2, n), -1, dtype=torch.long)
        for (py, px), (index, offsets) in BY_PHASE.items():
            for j, (i, (oy, ox)) in enumerate(zip(index, offsets, strict=True)):
                full = pilot(gh + max(oy, 0), gw + max(ox, 0), bank)[0, 0, max(oy, 0) :, max(ox, 0) :]
                row = F.pad(full, (max(-ox, 0), 0, max(-oy, 0), 0))[:gh, :gw].reshape(-1)
                bank[py * BASE_BLOCK + px, :, j] = row
                where[py * BASE_BLOCK + px, j] = i
    return bank, where


class Registration:
    """The registration stage of a model with ``config.register``: stego (B, C, H, W) -> registered stego."""

    def __init__(self, reader: ThumbnailReader) -> None:
        self.reader = reader

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The base code's read summed over its coefficient channels, as one (1, C, 8, 8) kernel: every channel's
        coefficient carries the same pilot sign, and natural images' channels move together, so summed over channels
        first the statistic is a standard normal on an unmarked image (and one output channel is a third of the
        convolution's work)."""
        return self.reader.pilot_kernel().sum(dim=0, keepdim=True).to(x.dtype)

    def _phase_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (2B, H - 7, W - 7): the channel-summed base coefficient of the 8x8 block at every pixel
        offset, of the images as they are and then of their mirrors. One convolution gives both: the mirror is read
        with the kernel mirrored (exact, no copy of the image); channels-last runs it about twice as fast here."""
        kernel = self._kernel(x)
        y = F.conv2d(x.contiguous(memory_format=torch.channels_last), torch.cat([kernel, kernel.flip(-1)]))
        return torch.cat([y[:, 0], y[:, 1].flip(-1)])

    def _statistics_of(self, y: torch.Tensor) -> torch.Tensor:
        """Phase maps (B, H - 7, W - 7) -> z (B, len(HYPOTHESES)): each pixel phase's blocks (``y[:, py::8,
        px::8]``, zero-padded to one grid) against the signs of every hypothesis of that phase, one batched product.
        A phase with fewer than two blocks a side (images under 23 px) gives 0."""
        b, hm, wm = y.shape
        gh, gw = -(-hm // BASE_BLOCK), -(-wm // BASE_BLOCK)
        padded = F.pad(y, (0, gw * BASE_BLOCK - wm, 0, gh * BASE_BLOCK - hm))
        phases = F.pixel_unshuffle(padded[:, None], BASE_BLOCK).reshape(b, BASE_BLOCK**2, gh * gw)
        bank, where = _sign_bank(gh, gw)
        num = torch.einsum("bpk,pkn->bpn", phases, bank.to(y.device, y.dtype))
        zp = num / phases.square().sum(dim=2).clamp_min(1e-12).sqrt()[..., None]
        rows = [len(range(py, hm, BASE_BLOCK)) for py in range(BASE_BLOCK)]  # blocks of each phase, per axis
        cols = [len(range(px, wm, BASE_BLOCK)) for px in range(BASE_BLOCK)]
        zp[:, torch.tensor([min(r, c) < 2 for r in rows for c in cols])] = 0
        used = where >= 0
        z = torch.zeros(b, len(HYPOTHESES), dtype=y.dtype, device=y.device)
        z[:, where[used].to(y.device)] = zp[:, used.to(y.device)]
        return z

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> z (B, len(HYPOTHESES)) for the image as it is."""
        return self._statistics_of(self._phase_maps(x))[: len(x)]

    def unmoved_statistics(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> z (B, 2): the statistics of the two hypotheses without a translation (as it is, mirrored),
        read on the base code's own grid only: about 1% of the search's work. The mirror's blocks are the original's
        counted from the right edge, read with the kernel mirrored (exact, no copy of the image)."""
        kernel = self._kernel(x)

        def z(yy: torch.Tensor) -> torch.Tensor:  # (B, h, w), as ``_statistics_of`` reads each phase
            signs = pilot(*yy.shape[-2:], yy)[0]
            energy = yy.square().sum(dim=(1, 2)).clamp_min(1e-12).sqrt()
            return (yy * signs).sum(dim=(1, 2)) / energy

        as_is = F.conv2d(x, kernel, stride=BASE_BLOCK)[:, 0]
        mirrored = F.conv2d(x[..., x.shape[-1] % BASE_BLOCK :], kernel.flip(-1), stride=BASE_BLOCK)[:, 0].flip(-1)
        return torch.stack([z(as_is), z(mirrored)], dim=1)

    def score(self, x: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B,) the detection score. With ``threshold``, an image whose unmoved statistic already
        reaches it keeps that statistic (the verdict cannot change: the search's maximum is at least as large) and
        only the others pay for the full search. The verdict only: a stego moved by a few pixels can pass the
        threshold unmoved while a moved hypothesis is stronger, so registration always searches."""
        if threshold is None:
            return self.search(x).score
        quick = self.unmoved_statistics(x).max(dim=1).values
        rest = quick < threshold
        if rest.any():
            quick = quick.clone()
            quick[rest] = self.search(x[rest]).score
        return quick

    def search(self, x: torch.Tensor) -> Alignment:
        """The best hypothesis per image over both orientations and every translation."""
        b = len(x)
        z = self._statistics_of(self._phase_maps(x))
        z = torch.cat([z[:b], z[b:]], dim=1)  # (B, 2 * n): as it is, then mirrored
        n = len(HYPOTHESES)
        best = z.argmax(dim=1)
        keep = z[:, IDENTITY] * KEEP >= z.gather(1, best[:, None])[:, 0]
        best = torch.where(keep, torch.full_like(best, IDENTITY), best)
        shifts = torch.tensor([(h[0], h[1]) for h in HYPOTHESES], device=x.device)[best % n]
        return Alignment(z.max(dim=1).values, best >= n, shifts[:, 0], shifts[:, 1])

    @staticmethod
    def apply(x: torch.Tensor, a: Alignment) -> torch.Tensor:
        """(B, C, H, W) moved back into register as ``a`` says: un-mirrored, then translated back."""
        if not (a.mirrored.any() or a.dy.any() or a.dx.any()):
            return x
        return torch.cat(
            [
                realign(mirror_image(x[i : i + 1]) if a.mirrored[i] else x[i : i + 1], int(a.dy[i]), int(a.dx[i]))
                for i in range(len(x))
            ]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.search(x))


def realign(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content of (B, C, H, W) down/right by (dy, dx) pixels (up/left where negative), same size; what
    moves in from outside is filled by replicating the edge. Replication, not reflection: replicated rows hold no
    2x2 checkerboard content, so the residual code's noise estimate is not inflated by the filled border (the
    shipped weights' shifts 1-7 gain 0.6-2.7 dB over reflection, except shift 7, -0.7 dB; docs/history.md)."""
    h, w = x.shape[-2:]
    top, bottom, left, right = max(dy, 0), max(-dy, 0), max(dx, 0), max(-dx, 0)
    padded = F.pad(x, (left, right, top, bottom), mode="replicate")
    return padded[..., bottom : bottom + h, right : right + w]
