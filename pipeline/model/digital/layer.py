"""The digital layer as a part of the hiding model: secret images -> keyed QIM codewords in the stego, and back.

Embed (``DigitalLayer.embed``), per protection level (``config.py``): the level's bytes (``payload.py``: header,
the per-image message in the base level, each secret compressed by ``source.py`` to the level's budget, CRC-32)
-> the LDPC codeword (``channel.py``) -> a keyed permutation of the level's slots, which spreads every codeword
over the whole image so that a lost region costs a few bits of each, not a burst -> dithered QIM on the stego's luma
(``modulation.py``), in every block whose cover is not flat.

Read (``DigitalLayer.read``): resample to the grid size, find the grid and undo a filter (``sync.py``), soft
readings with each block's chance of carrying the code (``modulation.soft_read``), LDPC decoding and the CRC per
level. The most detailed level that passes gives the secret; any level that passes makes the image ``marked``.

All patterns (dither, interleaver) come from the key (``keys.py``): without it nothing reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.model.digital import modulation as mod
from pipeline.model.digital import payload as pl
from pipeline.model.digital.codewords import LayerCode, PreparedSecrets, information
from pipeline.model.digital.source import decode_secret
from pipeline.model.digital.sync import ACCEPT_Z, Grid, apply_grid, find_filter, find_grid, inverse_filter, resize_to

__all__ = ["DigitalLayer", "DigitalReading", "LevelReading", "PreparedSecrets", "information"]

# z (``sync``'s statistic over the base level's readings, the blocks the reader takes as textured) under which no
# level is decoded: about 1 on an image that carries no code with this key on this grid (P(z > 3) = e^-4.5, 1%),
# while the base level's code needs a concentration near 0.2 (z near 13 at 256 px) and every condition measured
# reads z of 8 or more where a level decodes. An unmarked image then costs its readings, not three failing decodes
# (100 ms).
Z_GATE = 3.0
# Concentration under which an image that kept its grid is checked for a filter (clean and JPEG 75 read above
# 0.5; a 3x3 mean, a Gaussian blur and resizing to 0.75 below 0.45 on the training photos).
FILTER_CHECK_Z = 0.5


def _z(phase: torch.Tensor, weight: torch.Tensor) -> float:
    """z of lattice phases (h, w, S) over the blocks, weighted by ``weight`` (h, w) (``sync.identity_z``'s
    statistic)."""
    angle = 4 * math.pi * phase
    w = weight[..., None]
    s = torch.complex((torch.cos(angle) * w).sum(), (torch.sin(angle) * w).sum())
    return float(s.abs() / math.sqrt(max(1.0, float(weight.sum()) * phase.shape[-1])))


@dataclass
class LevelReading:
    """One level of one image: whether its CRC passed, what it carried."""

    name: str
    ok: bool
    payload: pl.LevelPayload | None = None


@dataclass
class DigitalReading:
    """What the digital layer read from one image."""

    grid: Grid
    filter: tuple[float, float] | None
    levels: list[LevelReading]
    secrets: list[np.ndarray] | None = None  # K (size, size, 3) uint8 of the best level that passed
    level: str | None = None  # that level's name
    message: bytes | None = None
    score: float = 0.0  # the base level's z on the grid found: the continuous detection score
    aligned: torch.Tensor | None = None  # (1, 3, N, N) in [0, 1]: the image moved back onto the grid (None: unmoved)

    @property
    def marked(self) -> bool:
        return any(lv.ok for lv in self.levels)


@dataclass(eq=False)
class DigitalLayer(LayerCode):
    """A keyed digital layer: ``prepare`` the secrets once per job, ``embed`` into stegos, ``read`` them back
    (its patterns and codewords: ``LayerCode``)."""

    def steps(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.step_values(i))

    def dither(self, i: int) -> torch.Tensor:
        """(h, w, S) in [0, 1): level ``i``'s keyed dither on the grid."""
        return torch.from_numpy(self.dither_values(i))

    # ----------------------------------------------------------------------------------------------------- embed
    def active_blocks(self, cover: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, N) cover in [0, 1] -> (B, N/8, N/8) bool: the blocks that carry the code (not flat)."""
        return ~mod.flat_blocks(mod.luma(cover * 255), self.config.flat_std)

    def embed(
        self,
        stego: torch.Tensor,
        cover: torch.Tensor,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None = None,
    ) -> torch.Tensor:
        """Write every level into ``stego`` (B, 3, N, N) in [0, 1] (unrounded; the analog path's output or the
        cover itself) -> the new stego, unclamped. ``cover`` decides which blocks are flat."""
        b, n = stego.shape[0], self.config.size
        if stego.shape[-2:] != (n, n):
            raise ValueError(f"the digital layer writes on its {n} x {n} grid, got {tuple(stego.shape[-2:])}")
        messages = messages or [None] * b
        y = mod.luma(stego * 255)
        c = mod.block_dct(y)
        new = c.clone()
        active = self.active_blocks(cover)[..., None]
        g = self.grid_blocks
        for i, lv in enumerate(self.config.levels):
            idx = mod.coefficient_index(lv.coeffs)
            bits = torch.from_numpy(self.slot_bits(prepared, i, messages)).view(b, g, g, len(lv.coeffs))
            written = mod.qim_write(c[..., idx], bits.float(), self.dither(i), self.steps(i), self.config.alpha)
            new[..., idx] = torch.where(active, written, c[..., idx])
        change = mod.block_idct(new - c) / 255  # luma change, added to R, G and B alike: chroma stays as it was
        return stego + change

    def written_levels(
        self,
        stego: torch.Tensor,
        cover: torch.Tensor,
        prepared: PreparedSecrets,
        messages: list[bytes | None] | None = None,
    ) -> list[str | None]:
        """The most detailed level each stego (B, 3, N, N), read exactly where it was written, carries intact (None:
        not even the base level): the embed job's verification, cheap where the channel is lossless.

        A level whose hard readings equal its codeword on every slot of the blocks the cover left active is intact
        without decoding where those slots are enough for its code (``LayerCode.sure_when_exact``: a smooth cover
        leaves so few that exact readings still do not decode). Otherwise, where it has the written slots to have a
        chance (``LayerCode.may_decode``), it is decoded from its soft readings weighed as a reader weighs them
        (``reader_prior``), and intact when the decoder gives back exactly the bits written."""
        b = stego.shape[0]
        messages = messages or [None] * b
        y = mod.luma(stego * 255)
        c = mod.block_dct(y)
        active = self.active_blocks(cover)
        written = active.flatten(1).sum(1).numpy()
        prior: torch.Tensor | None = None  # the reader's, for the images that need decoding
        g = self.grid_blocks
        phases = [
            mod.lattice_phase(c[..., mod.coefficient_index(lv.coeffs)], self.dither(i), self.steps(i))
            for i, lv in enumerate(self.config.levels)
        ]
        best: list[str | None] = [None] * b
        for i, (lv, e) in enumerate(zip(self.config.levels, phases, strict=True)):
            read = ((e > 0.25) & (e < 0.75)).to(torch.uint8)
            want = torch.from_numpy(self.slot_bits(prepared, i, messages)).view(b, g, g, len(lv.coeffs))
            exact = (((read != want) & active[..., None]).flatten(1).sum(1) == 0).numpy()
            intact = exact & self.sure_when_exact(i, written)
            tried = np.flatnonzero(~intact & self.may_decode(i, written)).tolist()
            if tried:  # read as a reader reads: every level's phases weigh the blocks
                prior = self.reader_prior(y) if prior is None else prior
                llrs, _ = mod.soft_read([p[tried] for p in phases], prior[tried])
                slot_llr, bits = llrs[i].flatten(1).double().numpy(), want[tried].flatten(1).numpy()
                intact[tried] = self.decodes_to(i, slot_llr, bits)
            for j in range(b):
                if intact[j]:
                    best[j] = lv.name
        return best

    def reader_prior(self, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, N, N) luma in grey levels -> (B, N/8, N/8): the reader's prior that each block carries the code,
        from its deviation in the image received (flat blocks were left unwritten; writing raises a deviation)."""
        return torch.sigmoid((mod.block_std(y) - self.config.reader_flat_std) / 0.5)

    # ------------------------------------------------------------------------------------------------------ read
    def read(
        self,
        images: torch.Tensor | list[torch.Tensor],
        search: bool = True,
        on_grid: torch.Tensor | list[torch.Tensor | None] | None = None,
    ) -> list[DigitalReading]:
        """Read every image ((B, 3, H, W) or a list of (1, 3, H, W), floats in [0, 1], any size) -> one reading
        each. ``search``: look for a moved grid when the identity does not convince (False: the caller knows the
        image sits where it was written, e.g. the embed job's verification). ``on_grid``: per image, the exact area
        average of the full-size image to the grid (1, 3, N, N), which the writer's upsampling inverts, for the
        unmoved hypothesis (None: the image resized here)."""
        seq = [images[i : i + 1] for i in range(images.shape[0])] if torch.is_tensor(images) else list(images)
        views = [None] * len(seq) if on_grid is None else [on_grid[i] for i in range(len(seq))]
        return [self._read_one(x.float(), search, v) for x, v in zip(seq, views, strict=True)]

    def _read_one(self, received: torch.Tensor, search: bool, on_grid: torch.Tensor | None = None) -> DigitalReading:
        n = self.config.size
        received = received * 255
        x = resize_to(received, n, n) if on_grid is None else on_grid.float().reshape(1, 3, n, n) * 255
        lv0 = self.config.levels[0]  # the base level: the most robust readings find the grid and the filter
        args = (lv0.coeffs, self.steps(0), self.dither(0))
        covered = torch.ones(n, n, dtype=torch.bool)
        aligned = None
        grid, filt = find_grid(mod.luma(x), n, *args, search=False), None
        if search and on_grid is not None and grid.z < ACCEPT_Z:
            # Mirrored and nothing else: the exact average mirrored back reads as written, where the search's
            # smaller copy blurs the top level away.
            flipped = x.flip(-1)
            mirror = find_grid(mod.luma(flipped), n, *args, search=False)
            if mirror.z >= ACCEPT_Z:
                x, grid, aligned = flipped, Grid(mirror.z, mirrored=True), flipped / 255
        if search and grid.z < ACCEPT_Z:
            # A filter blurs the readings off their lattices on the right grid; a move puts the grid elsewhere.
            # Filters are the cheaper question, and sharpening hides the grid from the search until undone. The
            # filter is taken only when it makes the grid convincing: on an image whose grid moved, every candidate
            # reads noise and one of them beats the others by chance.
            filt = find_filter(mod.luma(x), *args)
            if filt is not None:
                restored = inverse_filter(x, *filt)
                z = find_grid(mod.luma(restored), n, *args, search=False).z
                if z >= ACCEPT_Z:
                    x, grid = restored, Grid(z=z)
                else:
                    filt = None
        if search and grid.z < ACCEPT_Z:
            moved = find_grid(mod.luma(received), n, *args, search=True)
            if moved.z > grid.z:
                grid, filt = moved, None
                x, covered = apply_grid(received, grid, n)
                aligned = x / 255
                if grid.z < FILTER_CHECK_Z * math.sqrt(self._active_count(x)):
                    filt = find_filter(mod.luma(x), *args, self._inside(covered))
                    if filt is not None:
                        x = inverse_filter(x, *filt)
        elif search and filt is None and grid.z < FILTER_CHECK_Z * math.sqrt(self._active_count(x)):
            filt = find_filter(mod.luma(x), *args)
            if filt is not None:
                x = inverse_filter(x, *filt)
        reading = self._decode(x, grid, filt, self._inside(covered))
        reading.aligned = aligned
        return reading

    @staticmethod
    def _inside(covered: torch.Tensor) -> torch.Tensor:
        """(N, N) covered pixels -> (N/8, N/8) blocks wholly inside the received image."""
        return torch.nn.functional.avg_pool2d(covered[None, None].float(), mod.BLOCK)[0, 0] > 0.99

    def _active_count(self, x: torch.Tensor) -> float:
        """How many base-level readings the reader expects to carry the code (blocks it does not take as flat)."""
        sd = mod.block_std(mod.luma(x))
        return float((sd > self.config.reader_flat_std).sum()) * len(self.config.levels[0].coeffs)

    def _decode(self, x: torch.Tensor, grid: Grid, filt, inside: torch.Tensor) -> DigitalReading:
        y = mod.luma(x)
        c = mod.block_dct(y)
        phases = []
        for i, lv in enumerate(self.config.levels):
            idx = mod.coefficient_index(lv.coeffs)
            phases.append(mod.lattice_phase(c[..., idx], self.dither(i), self.steps(i)))
        prior = self.reader_prior(y) * inside.float()
        llrs, _ = mod.soft_read(phases, prior)
        levels, best = [], None
        gate = _z(phases[0][0], prior[0]) >= Z_GATE
        for i, lv in enumerate(self.config.levels):
            slot_llr = llrs[i].reshape(-1).double().numpy()
            reading = LevelReading(lv.name, False)
            if gate and self.worth_decoding(i, slot_llr):
                bits, _ = self.code(i).decode(slot_llr[self.interleaver(i)])
                data = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
                if pl.crc_ok(data):
                    try:
                        reading.payload, reading.ok = pl.parse(data), True
                        best = reading
                    except pl.PayloadError:
                        pass
            levels.append(reading)
        out = DigitalReading(grid, filt, levels, score=grid.z)
        if best is not None:
            out.level = best.name
            out.secrets = [decode_secret(codec, data, self.config.size) for codec, data in best.payload.streams]
        for reading in levels:
            if reading.ok and reading.payload.message is not None:
                out.message = reading.payload.message
        return out
