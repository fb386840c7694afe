"""Configuration of the digital layer: its protection levels, the flat-block rule and the grid, as data.

A level is a set of luma 8x8 DCT coefficients written at one quantiser step (a multiple of JPEG's quality-50 table,
floored in grey levels) carrying one codeword of a fixed payload. The levels go from small and strongly protected
(``base``: the lowest coefficients, large steps, a low-resolution secret and the per-image message: what survives
resizing to half, WebP 80 and JPEG 50) to large and fragile (``top``: higher frequencies at steps of a few grey
levels, the full secret for lossless outputs). The reader uses the most detailed level whose CRC passes. Which
coefficients and steps were chosen, and what each level carries under each condition: the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Level:
    """One protection level.

    Attributes:
        name: what the reports call it (``base``, ``main``, ``top``).
        coeffs: the (u, v) luma DCT coefficients it writes in every block that carries the code.
        step: quantiser step as a multiple of JPEG's quality-50 luminance table at each coefficient.
        floor: smallest step in grey levels (8-bit rounding alone moves a coefficient by ~0.3).
        payload: bytes of one codeword's message: header, message (base level), secret streams, CRC-32.
        message: whether the per-image message rides in this level.
    """

    name: str
    coeffs: tuple[tuple[int, int], ...]
    step: float
    payload: int
    floor: float = 0.0
    message: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeffs", tuple(tuple(c) for c in self.coeffs))
        if not self.coeffs or any(not (0 <= u < 8 and 0 <= v < 8) or (u, v) == (0, 0) for u, v in self.coeffs):
            raise ValueError(f"level {self.name!r}: coefficients are AC (u, v) pairs in 0..7, got {self.coeffs}")
        if self.step <= 0 or self.payload <= 0:
            raise ValueError(f"level {self.name!r}: step and payload must be positive")


# The shipped layout (K = 1 and 2). The analytic thumbnail code of the analog path writes (2, 3) and (3, 2) and its
# 4x4 detail code lands on 8x8 coefficients whose u and v are both odd or 4 or 6; the base and main levels keep off
# both, so the two paths do not disturb each other's readings. The top level's steps (about 3 grey levels) are too
# small to matter to the analog reading, so it also takes some of the detail code's coefficients.
BASE = ((0, 1), (1, 0), (2, 0), (0, 2))
MAIN = ((0, 3), (1, 2), (2, 1), (3, 0), (4, 0), (2, 2), (0, 4))
TOP = (
    *((0, 7), (7, 0), (6, 2), (2, 6), (2, 7), (7, 2), (1, 1), (1, 3), (3, 1), (3, 3), (1, 5), (5, 1)),
    *((3, 4), (4, 3), (4, 4), (1, 6), (6, 1), (3, 5), (5, 3), (4, 5), (5, 4), (6, 3), (3, 6), (1, 7)),
)


@dataclass(frozen=True)
class DigitalConfig:
    """The digital layer of a hiding model (the ``digital`` section of ``ModelConfig``).

    Attributes:
        enabled: the model writes and reads the digital layer.
        levels: the protection levels, most robust first.
        size: the analysis grid (the network size N); any image is read on it after a resample.
        flat_std: blocks whose cover luma standard deviation (grey levels) is under this carry nothing.
        reader_flat_std: where the reader's prior that a block carries the code crosses one half (above
            ``flat_std``: writing raises a block's deviation).
        alpha: distortion compensation of the QIM (1 = plain dithered QIM).
        max_message: longest per-image message in bytes.
        analog_gain: the analog path's change to the cover is scaled by this where the digital layer rides with it:
            the cover budget's split between the two (the model card's curve).
        analog_flat_gain: and by this too in the blocks the digital layer leaves flat, so flat sky stays at about
            one grey level of change.
    """

    enabled: bool = False

    levels: tuple[Level, ...] = (
        Level("base", BASE, 2.6, 96, message=True),
        Level("main", MAIN, 1.2, 300),
        Level("top", TOP, 0.05, 1200, floor=3.0),
    )
    size: int = 256
    flat_std: float = 2.0
    reader_flat_std: float = 3.0
    alpha: float = 1.0
    max_message: int = 32
    analog_gain: float = 1.0
    analog_flat_gain: float = 1.0

    def __post_init__(self) -> None:
        levels = tuple(lv if isinstance(lv, Level) else Level(**lv) for lv in self.levels)
        object.__setattr__(self, "levels", levels)
        if not levels:
            raise ValueError("a digital layer needs at least one level")
        seen: set[tuple[int, int]] = set()
        for lv in levels:
            clash = seen.intersection(lv.coeffs)
            if clash:
                raise ValueError(f"level {lv.name!r} reuses coefficients {sorted(clash)} of an earlier level")
            seen.update(lv.coeffs)
        if self.size % 8:
            raise ValueError(f"the grid size must be a multiple of 8, got {self.size}")
        if sum(lv.message for lv in levels) > 1:
            raise ValueError("the message rides in one level")
        if not (0 <= self.analog_gain <= 1 and 0 <= self.analog_flat_gain <= 1):
            raise ValueError("the analog gains are fractions of the analog path's change, between 0 and 1")

    @property
    def blocks(self) -> int:
        return (self.size // 8) ** 2

    def writes_alone(self, layers: str) -> bool:
        """No network writes with it in an embed job run with ``--layers layers``: the layer is on, and the job asks
        for it alone or the analog share is 0 (the network's change scaled away)."""
        return self.enabled and (layers == "digital" or self.analog_gain == 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DigitalConfig:
        return cls(**d)
