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
and columns it lost filled by reflection: reveal gives the secret re-aligned to the original frame, correct on the
overlap. ``score`` (the best z) is the detection score; its threshold is calibrated on unmarked photos (model card).
No weights; runs before the exported reveal graph (``HidingModel.restore``), like the blind deblur.
"""

from __future__ import annotations

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


def _signs(h: int, w: int, oy: int, ox: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, h, w): the pilot sign block (i, j) of the image carries when it holds original block (i + oy, j + ox);
    0 where that block lies before the original's first (the content moved down/right by a block or more)."""
    full = pilot(h + max(oy, 0), w + max(ox, 0), like)[..., max(oy, 0) :, max(ox, 0) :]
    return F.pad(full, (max(-ox, 0), 0, max(-oy, 0), 0))[..., :h, :w]


class Registration:
    """The registration stage of a model with ``config.register``: stego (B, C, H, W) -> registered stego."""

    def __init__(self, reader: ThumbnailReader) -> None:
        self.reader = reader

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> z (B, len(HYPOTHESES)) for the image as it is."""
        y = self.reader.base_coefficients_every_phase(x)
        z = torch.zeros(y.shape[0], len(HYPOTHESES), dtype=x.dtype, device=x.device)
        for (py, px), (index, offsets) in BY_PHASE.items():
            # Every channel's coefficient carries the same pilot sign, and natural images' channels move together:
            # summed over channels first, the statistic is a standard normal on an unmarked image.
            yy = y[..., py::BASE_BLOCK, px::BASE_BLOCK].sum(dim=1)  # (B, h, w)
            h, w = yy.shape[-2:]
            if h < 2 or w < 2:
                continue
            energy = yy.square().sum(dim=(1, 2)).clamp_min(1e-12).sqrt()
            signs = torch.cat([_signs(h, w, oy, ox, yy)[0] for oy, ox in offsets])  # (n, h, w)
            z[:, index] = torch.einsum("bhw,nhw->bn", yy, signs) / energy[:, None]
        return z

    def search(self, x: torch.Tensor) -> Alignment:
        """The best hypothesis per image over both orientations and every translation."""
        z = torch.cat([self.statistics(x), self.statistics(mirror_image(x))], dim=1)  # (B, 2 * n)
        n = len(HYPOTHESES)
        best = z.argmax(dim=1)
        keep = z[:, IDENTITY] * KEEP >= z.gather(1, best[:, None])[:, 0]
        best = torch.where(keep, torch.full_like(best, IDENTITY), best)
        shifts = torch.tensor([(h[0], h[1]) for h in HYPOTHESES], device=x.device)[best % n]
        return Alignment(z.max(dim=1).values, best >= n, shifts[:, 0], shifts[:, 1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = self.search(x)
        if not (a.mirrored.any() or a.dy.any() or a.dx.any()):
            return x
        return torch.cat(
            [
                realign(mirror_image(x[i : i + 1]) if a.mirrored[i] else x[i : i + 1], int(a.dy[i]), int(a.dx[i]))
                for i in range(len(x))
            ]
        )


def realign(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content of (B, C, H, W) down/right by (dy, dx) pixels (up/left where negative), same size; what
    moves in from outside is filled by reflection (replication where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    top, bottom, left, right = max(dy, 0), max(-dy, 0), max(dx, 0), max(-dx, 0)
    mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "replicate"
    padded = F.pad(x, (left, right, top, bottom), mode=mode)
    return padded[..., bottom : bottom + h, right : right + w]
