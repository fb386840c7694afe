"""The digital layer's embed and the embed job's check of it, in NumPy on the CPU: a job that runs no network
(``layers=digital``, or a model whose analog share is 0) writes and verifies the layer without torch.

The same arithmetic as ``layer.py``'s ``embed`` and ``written_levels`` and ``modulation.py``'s clipping and soft
reading (their docstrings explain it), and the jobs' luma-keeping rounding (the torch path never stores), on images
in grey levels with channels last (B, N, N, 3), as the job holds them. Float32 throughout, as the torch path
computes; the two differ only in the order of a few sums, which can move a stored pixel by one grey level where its
value sits on a rounding boundary (``tests/test_digital_cpu_path.py`` bounds how often). Readers are unaffected:
they read with ``layer.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np

from pipeline.model.digital import codewords
from pipeline.model.digital.codewords import BLOCK, MIN_SIGMA, LayerCode, PreparedSecrets, coefficient_positions

LUMA_WEIGHTS = np.array(codewords.LUMA_WEIGHTS, dtype=np.float32)
# Rounding a pixel's channels up adds luma 0 (none), 0.114 (B), 0.299 (R), 0.413 (R, B), 0.587 (G), 0.701 (G, B),
# 0.886 (R, G) or 1 (all): the k-th of these in order rounds R up when bit 1 of k is set, G bit 2, B bit 0. Between
# consecutive ones, the midpoints.
LUMA_MIDPOINTS = np.array([0.057, 0.2065, 0.356, 0.5, 0.644, 0.7935, 0.943], dtype=np.float32)
# Luma error (grey levels) under which plain rounding is kept (``research/luma_rounding.py``, 96 held-out crops):
# the top level's readings flipped by storage were 12,104 with plain rounding, 1,418 with the luma rounding
# everywhere and 1,455 with this tolerance, which costs 0.035 dB of cover PSNR where rounding everywhere cost 0.069.
LUMA_ROUNDING_TOLERANCE = 0.2
try:  # the C block writer, built by the install (setup.py); where it could not be, the NumPy path
    from pipeline.model.digital import _blockwrite
except ImportError:
    _blockwrite = None
# Rounds of ``CpuPath.settle``: on 288 held-out 256 px crops, the blocks left flipped after each round were 1162
# (none settled), 364, 137, 49, 25, 14, 5, 3, 1, 1 and none after the tenth; cover PSNR moved by 0.007 dB.
SETTLE_ROUNDS = 16


@functools.cache
def dct_matrix(n: int = BLOCK) -> np.ndarray:
    """(n, n) float32 orthonormal DCT-II: row k is the k-th basis vector."""
    i = np.arange(n, dtype=np.float64)
    rows = [(math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)) * np.cos(math.pi * (i + 0.5) * k / n) for k in range(n)]
    return np.stack(rows).astype(np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...): BT.601 luma in the input's scale (float32; a matrix product: four times the speed of the
    three strided channel products)."""
    return rgb @ LUMA_WEIGHTS


def _blocks(y: np.ndarray) -> np.ndarray:
    """(B, H, W) -> (B, H/8, W/8, 8, 8) view of the 8x8 blocks (row dy, column dx)."""
    b, h, w = y.shape
    return y.reshape(b, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 1, 3, 2, 4)


def block_dct(y: np.ndarray) -> np.ndarray:
    """(B, H, W) -> (B, H/8, W/8, 64): every block's orthonormal DCT, coefficient u*8 + v last."""
    d = dct_matrix()
    b, h, w = y.shape
    # Down the columns of each 8-row strip at once, then along each block's rows: two products on long operands
    # (a third faster than one 8 x 8 product per block, the same sums in the same order).
    c = (d @ y.reshape(b * h // BLOCK, BLOCK, w)).reshape(b, h // BLOCK, BLOCK, w // BLOCK, BLOCK) @ d.T
    return c.transpose(0, 1, 3, 2, 4).reshape(b, h // BLOCK, w // BLOCK, BLOCK * BLOCK)


def block_idct(c: np.ndarray) -> np.ndarray:
    """(B, h, w, 64) -> (B, 8h, 8w): the inverse of ``block_dct``."""
    d = dct_matrix()
    b, h, w, _ = c.shape
    x = d.T @ c.reshape(b, h, w, BLOCK, BLOCK).transpose(0, 1, 3, 2, 4).reshape(b * h, BLOCK, w * BLOCK)
    return (x.reshape(b, h * BLOCK, w, BLOCK) @ d).reshape(b, h * BLOCK, w * BLOCK)


def block_std(y: np.ndarray) -> np.ndarray:
    """(B, H, W) luma -> (B, H/8, W/8): each block's standard deviation."""
    return _blocks(y).reshape(*y.shape[:1], y.shape[1] // BLOCK, y.shape[2] // BLOCK, -1).std(-1)


def flat_blocks(y: np.ndarray, flat_std: float) -> np.ndarray:
    """(B, H, W) luma in grey levels -> (B, H/8, W/8) bool: blocks whose standard deviation is under ``flat_std``."""
    return block_std(y) < flat_std


def qim_write(c: np.ndarray, bits: np.ndarray, dither: np.ndarray, step: np.ndarray, alpha: float) -> np.ndarray:
    offset = (dither + np.float32(0.5) * bits) * step
    target = np.round((c - offset) / step) * step + offset
    return c + np.float32(alpha) * (target - c)


def lattice_phase(c: np.ndarray, dither: np.ndarray, step: np.ndarray) -> np.ndarray:
    e = c / step - dither
    return e - np.floor(e)


def hard_bits(e: np.ndarray) -> np.ndarray:
    """Lattice phases -> hard readings: bit 1 where the phase lies in (0.25, 0.75)."""
    return (e > 0.25) & (e < 0.75)


def clip_keeping_luma(x: np.ndarray, top: float = 255.0) -> np.ndarray:
    """(..., 3) RGB clipped to [0, ``top``], the luma a clipped channel loses put back on the pixel's other channels
    as far as they have room (``modulation.clip_keeping_luma``). Values already within range come back as they are
    (the same array: a stored stego is clipped once more on its way, at no cost)."""
    if x.size == 0 or (x.min() >= 0 and x.max() <= top):
        return x
    out = np.clip(x, 0, top)
    bad = (x < 0) | (x > top)
    outside = bad[..., 0] | bad[..., 1] | bad[..., 2]  # numpy's any() over an axis of 3 is ten times slower
    moved = x[outside]  # (P, 3)
    target = luma(moved)
    fixed = np.clip(moved, 0, top)
    for _ in range(2):  # a channel that takes the loss may clip in turn: a second pass puts that back too
        lost = (target - luma(fixed))[:, None]
        room = np.where(lost > 0, fixed < top, fixed > 0).astype(x.dtype)
        share = np.maximum(luma(room), np.float32(1e-6))[:, None]
        fixed = np.clip(fixed + room * lost / share, 0, top)
    out[outside] = fixed
    return out


def round_keeping_luma(x: np.ndarray, tolerance: float = LUMA_ROUNDING_TOLERANCE) -> np.ndarray:
    """(..., 3) RGB in grey levels within [0, 255] -> uint8: rounded to nearest where that moves the pixel's luma by
    at most ``tolerance`` grey levels, elsewhere each channel rounded down or up so that the luma is nearest its
    unrounded value (within 0.093). Plain rounding moves luma by up to 0.5 when the three channels share a
    fractional part, as a luma change on an 8-bit cover makes them, and flips about 1% of the top level's readings
    in a stego stored at the grid size."""
    nearest = np.round(x)
    moved = np.abs(luma(nearest - x)) > tolerance
    low = np.floor(x)
    # Each pixel's choice as a 3-bit code (``_ROUND_UP``'s rows), so that the choosing runs on one value a pixel:
    # plain rounding's, and where that moved the luma too far, the code whose luma is nearest the fractions'.
    code = (nearest > low) @ _CODE_BITS
    if moved.any():
        added = luma(x - low)
        k = np.zeros(added.shape, np.uint8)  # torch.bucketize's bin: how many midpoints lie below
        for m in LUMA_MIDPOINTS:
            k += added > m
        np.copyto(code, k, where=moved)
    up = _ROUND_UP_BYTES.take(code).view(np.uint8).reshape(*code.shape, 4)[..., :3]
    low = np.clip(low, 0, 255).astype(np.uint8)
    return np.maximum(low + up, low)  # up is 0 or 1: a channel at 255 that wraps to 0 stays at 255, as the clip did


# Which channels (R, G, B) the k-th luma step rounds up (``LUMA_MIDPOINTS``); a pixel's code from its channels'
# choices; and each code's three 0/1 bytes (R, G, B, then a pad byte) in one little-endian word, to look up at once.
_ROUND_UP = np.array([((k >> 1) & 1, (k >> 2) & 1, k & 1) for k in range(8)], dtype=np.float32)
_CODE_BITS = np.array([2, 4, 1], dtype=np.uint8)
_ROUND_UP_BYTES = np.array([int(r) | int(g) << 8 | int(b) << 16 for r, g, b in _ROUND_UP], dtype="<u4")


def _log_i0(k: np.ndarray) -> np.ndarray:
    """log I0(k) (the von Mises normaliser) of the few concentrations soft reading uses: float64 holds I0 up to
    k = 700, and ``MIN_SIGMA`` keeps k under 64 (scipy.special's scaled I0 would cost 0.15 s of import)."""
    return np.log(np.i0(k.astype(np.float64))).astype(np.float32)


def soft_read(
    phases: list[np.ndarray], prior: np.ndarray, iterations: int = 2, max_llr: float = 12.0
) -> list[np.ndarray]:
    """Per-slot bit LLRs of every level from lattice phases (B, h, w, S_l) and the prior (B, h, w) that a block
    carries the code (``modulation.soft_read``)."""
    with np.errstate(divide="ignore", over="ignore"):  # certain blocks: log(0) = -inf, as torch computes it
        return _soft_read(phases, prior, iterations, max_llr)


def _soft_read(phases: list[np.ndarray], prior: np.ndarray, iterations: int, max_llr: float) -> list[np.ndarray]:
    b = np.clip(prior, 0.02, 0.98).astype(np.float32)
    logit_prior = np.log(b) - np.log1p(-b)
    active = b
    kappas: list[np.ndarray] = []
    for _ in range(iterations):
        kappas, block_llr = [], logit_prior.copy()
        for e in phases:
            w = active[..., None]
            angle = np.float32(4 * math.pi) * e
            total = np.maximum(w.sum((1, 2)), np.float32(1e-6))
            cs = (np.cos(angle) * w).sum((1, 2)) / total
            sn = (np.sin(angle) * w).sum((1, 2)) / total
            r = np.clip(np.sqrt(cs**2 + sn**2), 1e-6, 1 - 1e-6)
            sigma = np.maximum(np.sqrt(-np.log(r) / np.float32(8 * math.pi**2)), np.float32(MIN_SIGMA))
            kappa = (1.0 / (np.float32(2 * math.pi) * sigma) ** 2)[:, None, None, :].astype(np.float32)
            kappas.append(kappa)
            x = kappa * np.cos(np.float32(2 * math.pi) * e)
            block_llr = block_llr + (np.logaddexp(x, -x) - np.float32(math.log(2)) - _log_i0(kappa)).sum(-1)
        active = (1.0 / (1.0 + np.exp(-block_llr))).astype(np.float32)
    llrs = []
    for e, kappa in zip(phases, kappas, strict=True):
        a = active[..., None]
        x = kappa * np.cos(np.float32(2 * math.pi) * e)
        log_uniform = _log_i0(kappa)
        p0 = np.logaddexp(np.log(a) + x, np.log1p(-a) + log_uniform)
        p1 = np.logaddexp(np.log(a) - x, np.log1p(-a) + log_uniform)
        llrs.append(np.clip(p0 - p1, -max_llr, max_llr))
    return llrs


class CpuPath:
    """A ``LayerCode``'s pixels in NumPy: ``embed`` the levels into stegos and check a stored stego
    (``written_levels``), both on (B, N, N, 3) float32 grey levels."""

    def __init__(self, code: LayerCode, compiled: bool | None = None) -> None:
        """``compiled``: ``store`` writes with the C block writer (``_blockwrite.c``); None: where it is built."""
        self.code = code
        self.config = code.config
        if compiled and _blockwrite is None:
            raise RuntimeError("the C block writer is not built: `pip install -e .` builds it (a C compiler needed)")
        self.compiled = _blockwrite is not None if compiled is None else compiled

    def active_blocks(self, cover: np.ndarray) -> np.ndarray:
        """(B, N, N, 3) cover in grey levels -> (B, N/8, N/8) bool: the blocks that carry the code (not flat).

        With the C block writer (``compiled``), in C: 0.6 ms an image in NumPy (the luma, a copy of its blocks and
        their deviations) on the job's busiest thread. The two agree but for a block whose deviation lies within
        float32 rounding of ``flat_std`` (C sums in float64)."""
        b, n = cover.shape[0], cover.shape[1]
        if not self.compiled or cover.shape[1:] != (n, n, 3) or n % BLOCK:
            return ~flat_blocks(luma(cover), self.config.flat_std)
        out = np.empty((b, n // BLOCK, n // BLOCK), np.uint8)
        flat_std = float(np.float32(self.config.flat_std))  # NumPy compares the float32 deviations with it in float32
        _blockwrite.active_blocks(b, n, np.ascontiguousarray(cover, np.float32), out, LUMA_WEIGHTS, flat_std)
        return out.view(bool)

    def _want(self, prepared: PreparedSecrets, i: int, messages: list[bytes | None]) -> np.ndarray:
        """(B, h, w, S) uint8: each image's level-``i`` codeword on its slots (read-only: where every image carries
        the same one, ``LayerCode.shared_slot_bits`` broadcast, not copied: tiling it cost 0.3 ms an image)."""
        g, s = self.code.grid_blocks, len(self.config.levels[i].coeffs)
        if self.code.shares_codeword(prepared, i):
            return np.broadcast_to(self.code.shared_slot_bits(prepared, i).reshape(g, g, s), (len(messages), g, g, s))
        return self.code.slot_bits(prepared, i, messages).reshape(len(messages), g, g, s)

    def embed(
        self,
        stego: np.ndarray,
        cover: np.ndarray,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None = None,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write every level into ``stego`` (B, N, N, 3) (the cover itself, or the analog path's output) -> the new
        stego, unclipped (``DigitalLayer.embed``). ``cover`` decides which blocks are flat (or ``active``, their
        ``active_blocks``)."""
        return stego + self.luma_change(stego, cover, prepared, messages, active)[..., None]  # on R, G and B alike

    def luma_change(
        self,
        stego: np.ndarray,
        cover: np.ndarray,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None = None,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """``embed``'s change to each pixel's luma, (B, N, N) float32: ``embed`` adds it to R, G and B."""
        n = self.config.size
        if stego.shape[1:3] != (n, n):
            raise ValueError(f"the digital layer writes on its {n} x {n} grid, got {stego.shape[1:3]}")
        messages = messages or [None] * len(stego)
        c = block_dct(luma(stego))
        new = c.copy()
        on = (self.active_blocks(cover) if active is None else active)[..., None]
        for i, lv in enumerate(self.config.levels):
            idx = coefficient_positions(lv.coeffs)
            bits = self._want(prepared, i, messages).astype(np.float32)
            sub = c[..., idx]
            written = qim_write(sub, bits, self.code.dither_values(i), self.code.step_values(i), self.config.alpha)
            new[..., idx] = np.where(on, written, sub)
        return block_idct(new - c)

    def store(
        self,
        cover: np.ndarray,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None = None,
        active: np.ndarray | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Write every level on covers (B, N, N, 3) float32 and store each stego in 8 bits -> per image, in turn: the
        stored stego (N, N, 3) uint8 (``round_keeping_luma(clip_keeping_luma(embed(...)))``) and its flipped
        blocks, (N/8, N/8) bool: the carrying blocks whose stored readings differ from the codeword (what ``settle``
        rewrites); None where the NumPy path wrote it (``settle`` finds them). ``active``: as ``embed``'s.

        The C block writer (``compiled``) does each block's transforms, write, clip, rounding and reading at once,
        with the GIL released: 1.2 ms a 256 px image, where the NumPy path took 4.8 and ``settle``'s reading of the
        stored stegos 0.8 more (``docs/model.md``)."""
        n = self.config.size
        if cover.shape[1:] != (n, n, 3):
            raise ValueError(f"the digital layer writes on its {n} x {n} grid, got {cover.shape[1:]}")
        messages = messages or [None] * len(cover)
        active = self.active_blocks(cover) if active is None else active
        if not self.compiled:
            change = self.luma_change(cover, cover, prepared, messages, active)
            for x, dy in zip(cover, change, strict=True):
                yield round_keeping_luma(clip_keeping_luma(x + dy[..., None])), None
            return
        pos, dither, step = self._slots
        bits = self._block_bits(prepared, messages)
        on = np.ascontiguousarray(active, dtype=np.uint8)
        t, g, d, alpha = len(pos), n // BLOCK, dct_matrix(), self.config.alpha
        for x, b, want in zip(cover, on, bits, strict=True):
            out, wrong = np.empty((n, n, 3), np.uint8), np.empty((g, g), np.uint8)
            x = np.ascontiguousarray(x, np.float32)
            args = (x, out, wrong, b, pos, want, dither, step, d, LUMA_WEIGHTS, LUMA_MIDPOINTS)
            _blockwrite.write_stored(n, t, *args, alpha, LUMA_ROUNDING_TOLERANCE)
            yield out, wrong.view(bool)

    @functools.cached_property
    def _slots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every level's slots of a block in turn, as the C block writer takes them: the coefficient positions (T,)
        int32, the dither (N/8, N/8, T) float32 and the steps (T,) float32."""
        levels = range(len(self.config.levels))
        pos = np.concatenate([coefficient_positions(self.config.levels[i].coeffs) for i in levels]).astype(np.int32)
        dither = np.ascontiguousarray(np.concatenate([self.code.dither_values(i) for i in levels], axis=-1))
        return pos, dither, np.concatenate([self.code.step_values(i) for i in levels])

    def _block_bits(self, prepared: PreparedSecrets, messages: list[bytes | None]) -> np.ndarray:
        """(B, N/8, N/8, T) uint8, C-contiguous rows: each image's codeword bits on every level's slots in turn (one
        array broadcast where every level's codeword is shared)."""
        levels = range(len(self.config.levels))
        if all(self.code.shares_codeword(prepared, i) for i in levels):
            return np.broadcast_to(self._shared_block_bits(prepared), (len(messages), *self._slots[1].shape))
        return np.ascontiguousarray(np.concatenate([self._want(prepared, i, messages) for i in levels], axis=-1))

    @functools.lru_cache(maxsize=8)  # noqa: B019 (a job's few secret sets; the cache dies with the path)
    def _shared_block_bits(self, prepared: PreparedSecrets) -> np.ndarray:
        levels = range(len(self.config.levels))
        return np.ascontiguousarray(np.concatenate([self._want(prepared, i, [None])[0] for i in levels], axis=-1))

    def settle(
        self,
        stored: np.ndarray,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None,
        active: np.ndarray,
        rounds: int = SETTLE_ROUNDS,
        flipped: np.ndarray | None = None,
    ) -> np.ndarray:
        """Rewrite, in place, the blocks of stored stegos (B, N, N, 3) uint8 where storage flipped a hard reading
        (their clip and rounding, ``clip_keeping_luma`` and ``round_keeping_luma``), until every active slot of every
        level reads its codeword bit or ``rounds`` pass -> (B,) bool: each stego reads intact (read here, on the
        stored pixels as they are left). ``active``: the blocks written, (B, N/8, N/8) bool (``active_blocks`` of the
        covers); ``flipped``: the blocks whose readings storage flipped, where ``store`` found them (else found
        here, as ``store`` finds them).

        The flips are where a block meets black or white: the clip takes back part of the change towards the
        lattice point the write chose. A flipped coefficient is aimed at the same bit's lattice point on the far
        side, a step away, where the clip pushed it; the block's other coefficients at their nearest, as the write
        aims them. Only the flipped blocks are rewritten, each on its own pixels (``docs/model.md``).
        """
        b, g = len(stored), self.config.size // BLOCK
        if stored.shape[1:] != (g * BLOCK, g * BLOCK, 3) or stored.dtype != np.uint8 or not stored.flags.c_contiguous:
            raise ValueError(f"settle rewrites contiguous uint8 stegos on its grid, got {stored.dtype} {stored.shape}")
        messages = messages or [None] * b
        wants = [self._want(prepared, i, messages).astype(bool) for i in range(len(self.config.levels))]
        wrong = self.flipped_blocks(stored, wants, active) if flipped is None else flipped
        pixels = stored.reshape(b, g, BLOCK, g, BLOCK, 3)
        where = np.nonzero(wrong)
        for _ in range(rounds):
            if not len(where[0]):
                break
            bi, by, bx = where
            x = pixels[bi, by, :, bx].astype(np.float32)  # (P, 8, 8, 3)
            c = block_dct(luma(x)).reshape(len(bi), BLOCK * BLOCK)  # each block an 8 x 8 image of its own
            new = c.copy()
            for i, want in enumerate(wants):
                idx = coefficient_positions(self.config.levels[i].coeffs)
                dither, step = self.code.dither_values(i)[by, bx], self.code.step_values(i)
                sub, bits = c[:, idx], want[bi, by, bx]
                near = qim_write(sub, bits.astype(np.float32), dither, step, 1.0)
                flipped = hard_bits(lattice_phase(sub, dither, step)) != bits
                new[:, idx] = np.where(flipped, near + step * np.sign(sub - near), near)
            change = block_idct((new - c).reshape(len(bi), 1, 1, BLOCK * BLOCK))
            x = round_keeping_luma(clip_keeping_luma(x + change[..., None]))
            pixels[bi, by, :, bx] = x
            c = block_dct(luma(x.astype(np.float32))).reshape(len(bi), BLOCK * BLOCK)
            still = np.zeros(len(bi), bool)
            for i, want in enumerate(wants):
                still |= (hard_bits(self._phases(c, i, (by, bx))) != want[bi, by, bx]).any(-1)
            where = (bi[still], by[still], bx[still])
        intact = np.ones(b, bool)
        intact[where[0]] = False
        return intact

    def flipped_blocks(self, stored: np.ndarray, wants: list[np.ndarray], active: np.ndarray) -> np.ndarray:
        """(B, N, N, 3) uint8 stored stegos -> (B, N/8, N/8) bool: the ``active`` blocks where a hard reading of a
        level differs from ``wants[level]`` (B, N/8, N/8, S) bool."""
        b, g = len(stored), self.config.size // BLOCK
        coeffs = block_dct(luma(stored.astype(np.float32))).reshape(b, g, g, BLOCK * BLOCK)
        wrong = np.zeros((b, g, g), bool)
        for i, want in enumerate(wants):
            wrong |= (self._flipped(coeffs, i, want) & active[..., None]).any(-1)
        return wrong

    def _flipped(self, coeffs: np.ndarray, i: int, want: np.ndarray) -> np.ndarray:
        """(B, h, w, 64) block DCTs -> (B, h, w, S) bool: level ``i``'s hard readings that differ from ``want``."""
        return hard_bits(self._phases(coeffs, i)) != want

    def reader_prior(self, y: np.ndarray) -> np.ndarray:
        """(B, N, N) luma in grey levels -> (B, N/8, N/8) float32: a reader's prior that each block carries the code,
        from its deviation in the image received (``DigitalLayer`` reads with the same)."""
        sd = block_std(y)
        return (1.0 / (1.0 + np.exp(-(sd - np.float32(self.config.reader_flat_std)) / np.float32(0.5)))).astype(
            np.float32
        )

    def written_levels(
        self,
        stego: np.ndarray,
        cover: np.ndarray | None,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None = None,
        active: np.ndarray | None = None,
    ) -> list[str | None]:
        """The most detailed level each stego (B, N, N, 3), read exactly where it was written, carries intact
        (``DigitalLayer.written_levels``, which says when a level needs decoding; here in the decoding worker where
        one runs). ``cover`` decides the written blocks, unless ``active`` gives them (then it may be None)."""
        b = len(stego)
        messages = messages or [None] * b
        y = luma(stego)
        c = block_dct(y)
        on = self.active_blocks(cover) if active is None else active
        written = on.reshape(b, -1).sum(1)
        prior: np.ndarray | None = None
        best: list[str | None] = [None] * b
        undecided = np.arange(b)
        # The most detailed level first: an image whose top level is intact needs no decoding of the others.
        for i in reversed(range(len(self.config.levels))):
            if not len(undecided):
                break
            e = self._phases(c[undecided], i)
            want = self._want(prepared, i, [messages[j] for j in undecided])
            errors = (hard_bits(e) != want.astype(bool)) & on[undecided][..., None]
            count = errors.reshape(len(undecided), -1).sum(1)
            intact = (count == 0) & self.code.sure_when_exact(i, written[undecided])
            tried = np.flatnonzero(~intact & self.code.may_decode(i, written[undecided]))
            if len(tried):  # read as a reader reads: every level's phases weigh the blocks
                prior = self.reader_prior(y) if prior is None else prior
                picked = undecided[tried]
                phases = [e[tried] if k == i else self._phases(c[picked], k) for k in range(len(self.config.levels))]
                llr = soft_read(phases, prior[picked])[i]
                slot_llr = llr.reshape(len(tried), -1).astype(np.float64)
                intact[tried] = self.code.decodes_to(i, slot_llr, want[tried].reshape(len(tried), -1))
            for j in undecided[intact]:
                best[j] = self.config.levels[i].name
            undecided = undecided[~intact]
        return best

    def _phases(self, c: np.ndarray, i: int, blocks: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(B, h, w, 64) block DCTs -> (B, h, w, S) level ``i``'s lattice phases; or, with ``blocks`` (the rows and
        columns of P blocks on the grid), (P, 64) -> (P, S), those blocks' phases."""
        sub = c[..., coefficient_positions(self.config.levels[i].coeffs)]
        dither = self.code.dither_values(i) if blocks is None else self.code.dither_values(i)[blocks]
        return lattice_phase(sub, dither, self.code.step_values(i))
