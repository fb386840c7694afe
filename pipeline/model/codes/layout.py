"""Which block-DCT coefficients the thumbnail code gives each secret (``thumbnail.py``): data, without torch, so
that a model's configuration (``pipeline.model.config``) can be read and checked where torch is never imported."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BASE_BLOCK, DETAIL_BLOCK = 8, 4
# The residual code's 2x2 checkerboard (``residual.py``), in pixel-unshuffle order, and its blocks per 8x8 side.
CHECKER = (0.5, -0.5, -0.5, 0.5)
CHECKER_BLOCK = 2

# Base coefficients per secret, all orthogonal to the detail coefficients on every 8x8 block (checked in the tests).
# ``low``: the first layout, low frequencies (robust to blur and JPEG); ``quiet``: the third and fourth secrets in
# (2, 5) and (5, 2), where photos have a quarter of the energy of (2, 1) and (1, 2) (rms 7.2 and 7.8 grey levels
# against 28.5 and 27.4 on 8x8 blocks at 256 px): informed embedding pays that energy for every coefficient it
# writes, and with four secrets (2, 1) and (1, 2) alone cost the cover 34 dB.
BASE_LAYOUTS = {"low": ((2, 3), (3, 2), (2, 1), (1, 2)), "quiet": ((2, 3), (3, 2), (2, 5), (5, 2))}
# The leading base coefficients every layout shares ((2,3) and (3,2)): their pilots are what registration, the mirror
# decision and the deblur measure. The quiet layout's (2,5) and (5,2) keep 8% of their gain after a 3x3 mean; summed
# in, they left registration and the deblur blind to that blur.
SHARED_BASE = next(i for i, coeffs in enumerate(zip(*BASE_LAYOUTS.values(), strict=True)) if len(set(coeffs)) > 1)
# Detail coefficients per secret (4x4 DCT). A 4x4 coefficient (u, v) is orthogonal to every base coefficient on
# every 8x8 block when neither u nor v is 1; of those, the four where photos have the least energy (rms 3.8 to 8.1
# grey levels at 256 px, against 10 to 20 for (0, 2), (2, 0), (0, 3), (3, 0)): informed embedding pays the cover's
# own value of each coefficient it writes.
DETAIL_COEFFS = ((2, 2), (3, 3), (3, 2), (2, 3))


@dataclass(frozen=True)
class CodeLayout:
    """Which coefficients carry which secret: ``base`` the 8x8 coefficients (one per secret, K of them), ``detail`` the
    4x4 coefficients (one for each of the first D secrets, 1 <= D <= K)."""

    base: tuple[tuple[int, int], ...]
    detail: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, num_secrets: int, detail_secrets: int = 1, base_layout: str = "low") -> CodeLayout:
        """The layout of a model with K = ``num_secrets``, the detail code on its first ``detail_secrets``."""
        if base_layout not in BASE_LAYOUTS:
            raise ValueError(f"unknown base layout {base_layout!r}: expected one of {', '.join(BASE_LAYOUTS)}")
        coeffs = BASE_LAYOUTS[base_layout]
        if not 1 <= num_secrets <= len(coeffs):
            raise ValueError(f"the codes carry 1 to {len(coeffs)} secrets, not {num_secrets}")
        if not 1 <= detail_secrets <= num_secrets:
            raise ValueError(f"the detail code carries 1 to K = {num_secrets} secrets, not {detail_secrets}")
        return cls(coeffs[:num_secrets], DETAIL_COEFFS[:detail_secrets])

    @property
    def num_secrets(self) -> int:
        return len(self.base)

    @property
    def detail_secrets(self) -> int:
        return len(self.detail)


def dct_basis_values(u: int, v: int, n: int) -> np.ndarray:
    """(n, n) float64: the orthonormal DCT basis image of coefficient (u, v)."""
    i = np.arange(n, dtype=np.float64)

    def one(k: int) -> np.ndarray:
        return (math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)) * np.cos(math.pi * (i + 0.5) * k / n)

    return np.outer(one(u), one(v))


def checker_coefficients(block: np.ndarray) -> np.ndarray:
    """(8, 8) -> (16,): each 2x2 block's checkerboard coefficient, blocks in row-major order."""
    g = BASE_BLOCK // CHECKER_BLOCK
    folded = block.reshape(g, CHECKER_BLOCK, g, CHECKER_BLOCK).transpose(0, 2, 1, 3).reshape(g * g, 4)
    return folded @ np.asarray(CHECKER)


def free_projector(layout: CodeLayout) -> np.ndarray:
    """(16, 16): onto the checkerboard coefficients of an 8x8 block orthogonal to the thumbnail code's basis images
    (the residual code's room, ``residual.py``)."""

    # The basis images in float32, as the thumbnail code holds them: a coefficient such as (2, 5) is orthogonal to
    # the checkerboard in exact arithmetic but not after that rounding, and the models were trained with the room
    # the rounded images leave (9 coordinates, not 10, for three or four secrets in the quiet layout).
    def basis(u: int, v: int, n: int) -> np.ndarray:
        return dct_basis_values(u, v, n).astype(np.float32).astype(np.float64)

    images = [basis(u, v, BASE_BLOCK) for u, v in layout.base]
    for coeff in layout.detail:
        for i in range(0, BASE_BLOCK, DETAIL_BLOCK):
            for j in range(0, BASE_BLOCK, DETAIL_BLOCK):
                img = np.zeros((BASE_BLOCK, BASE_BLOCK))
                img[i : i + DETAIL_BLOCK, j : j + DETAIL_BLOCK] = basis(*coeff, DETAIL_BLOCK)
                images.append(img)
    v = np.stack([checker_coefficients(img) for img in images], 1)
    return np.eye(v.shape[0]) - v @ np.linalg.pinv(v)


def residual_dims(layout: CodeLayout | int) -> int:
    """D: the residual code's coordinates per 8x8 block and channel (16 checkerboard coefficients less the thumbnail
    code's components there); 0 where the thumbnail code leaves no room. An int is ``CodeLayout.of(K)``. The rank
    alone, for checking a configuration without torch: the code's own maps (``residual._maps``) come from its
    projector in torch, whose eigenvectors the trained models' weights are tied to."""
    layout = CodeLayout.of(layout) if isinstance(layout, int) else layout
    return int((np.linalg.eigvalsh(free_projector(layout)) > 0.5).sum())
