"""The digital layer's C block writer (``digital/_blockwrite.c``, ``CpuPath.store``) against the NumPy path it
mirrors, on real photos."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from digital_kit import sample_photos

from pipeline.model.digital import cpu_path as cp
from pipeline.model.digital.codewords import LayerCode
from pipeline.model.digital.config import DigitalConfig
from pipeline.model.digital.keys import Key

# CI installs the package (.ci/run), which builds the writer: there it is always tested; elsewhere it may be absent
# (an install without a C compiler), and the layer runs its NumPy path.
pytestmark = pytest.mark.skipif(
    cp._blockwrite is None and not os.environ.get("CI"), reason="the C block writer is not built (pip install -e .)"
)

KEY = Key(bytes(range(7, 39)))


@functools.lru_cache(maxsize=1)
def layer() -> tuple[LayerCode, object, np.ndarray]:
    """(code, prepared secrets with a message room, covers (B, N, N, 3) float32: the photos, and the same with blown
    highlights and crushed shadows, where storage clips the change)."""
    photos = sample_photos()
    code = LayerCode(DigitalConfig(enabled=True), KEY)
    prepared = code.prepare([photos[0]], message_room=16)
    covers = np.stack(photos[1:]).astype(np.float32)
    harsh = np.clip((covers - 80) * 1.5 + 80, 0, 255)
    return code, prepared, np.concatenate([covers, harsh])


def _store(compiled: bool, messages: list[bytes | None]) -> tuple[np.ndarray, list[np.ndarray | None]]:
    code, prepared, covers = layer()
    out = list(cp.CpuPath(code, compiled=compiled).store(covers, prepared, messages))
    return np.stack([x for x, _ in out]), [f for _, f in out]


@pytest.mark.parametrize("messages", ["per-image", None])
def test_the_c_writer_stores_what_numpy_stores_and_finds_the_flipped_blocks(messages):
    code, prepared, covers = layer()
    msgs = [f"img-{i}".encode() for i in range(len(covers))] if messages else [None] * len(covers)
    by_numpy, none = _store(False, msgs)
    by_c, flipped = _store(True, msgs)
    assert none == [None] * len(covers)  # the NumPy path leaves the flipped blocks to settle
    diff = np.abs(by_c.astype(int) - by_numpy.astype(int))
    # Sums in another order: a value on a rounding boundary moves a grey level (most often a channel that the clip
    # left a hair under 255 in one and at 255 in the other, in the harsh covers' highlights), or, rarely, a
    # coefficient on a quantiser's midpoint goes to the other lattice point of the same bit (a block a step apart).
    assert (diff[:3] > 0).mean() < 1e-3 and (diff[3:] > 0).mean() < 1e-2
    assert (diff > 1).mean() < 1e-4
    assert not np.array_equal(by_c, np.rint(covers).astype(np.uint8))  # something was written
    path = cp.CpuPath(code, compiled=False)
    active = path.active_blocks(covers)
    wants = [path._want(prepared, i, msgs).astype(bool) for i in range(len(code.config.levels))]
    found = path.flipped_blocks(by_c, wants, active)
    np.testing.assert_array_equal(np.stack(flipped), found)  # as the NumPy check reads the C writer's stegos
    assert found[3:].sum() > 50 and (found & ~active).sum() == 0  # the harsh covers clip; unwritten blocks never
    # Both paths' stegos read the same after settle: every reading as written.
    for stored, wrong in ((by_numpy, None), (by_c, np.stack(flipped))):
        stored = stored.copy()
        assert path.settle(stored, prepared, msgs, active, flipped=wrong).all()
        assert not path.flipped_blocks(stored, wants, active).any()


def test_blocks_that_carry_nothing_are_only_clipped_and_rounded_keeping_luma():
    code, prepared, _ = layer()
    rng = np.random.default_rng(5)
    x = rng.uniform(-8, 263, (2, 256, 256, 3)).astype(np.float32)
    off = np.zeros((2, 32, 32), bool)
    got = np.stack([s for s, _ in cp.CpuPath(code, compiled=True).store(x, prepared, None, off)])
    want = cp.round_keeping_luma(cp.clip_keeping_luma(x))
    diff = np.abs(got.astype(int) - want.astype(int))
    # float32 sums in another order in the clip (a twentieth of these pixels are outside [0, 255]): at a boundary
    assert (diff > 0).mean() < 5e-3 and diff.max() <= 1
    inside = (x >= 0).all(-1) & (x <= 255).all(-1)
    np.testing.assert_array_equal(got[inside], want[inside])  # the rounding alone: the same bytes


def test_the_writer_refuses_buffers_of_the_wrong_size_or_type():
    code, prepared, covers = layer()
    path = cp.CpuPath(code, compiled=True)
    with pytest.raises(ValueError, match="grid"):
        next(path.store(covers[:, :128, :128], prepared))
    pos, dither, step = path._slots
    n, t = 256, len(pos)
    out, wrong = np.empty((n, n, 3), np.uint8), np.empty((32, 32), np.uint8)
    bits, on = np.zeros(dither.shape, np.uint8), np.ones((32, 32), np.uint8)
    args = [covers[0], out, wrong, on, pos, bits, dither, step, cp.dct_matrix(), cp.LUMA_WEIGHTS, cp.LUMA_MIDPOINTS]
    cp._blockwrite.write_stored(n, t, *args, 1.0, 0.2)  # as given: fine
    for i, bad, match in [
        (0, covers[0].astype(np.float64), "cover"),  # float64 pixels
        (1, out[:128], "out"),  # too small
        (5, bits[..., :-1], "bits: needs a C-contiguous buffer"),  # a view with gaps
        (6, dither[:, :, :1], "dither"),
        (4, pos.astype(np.int64), "pos"),
    ]:
        with pytest.raises(ValueError, match=match):
            cp._blockwrite.write_stored(n, t, *args[:i], bad, *args[i + 1 :], 1.0, 0.2)
    with pytest.raises(ValueError, match="out: needs a C-contiguous writable buffer"):
        cp._blockwrite.write_stored(n, t, args[0], np.broadcast_to(out, out.shape), *args[2:], 1.0, 0.2)
    bad_pos = pos.copy()
    bad_pos[0] = 0  # the DC coefficient is never written
    with pytest.raises(ValueError, match="AC"):
        cp._blockwrite.write_stored(n, t, *args[:4], bad_pos, *args[5:], 1.0, 0.2)
    with pytest.raises(ValueError, match="whole"):
        cp._blockwrite.write_stored(250, t, *args, 1.0, 0.2)


def test_a_path_asked_for_the_c_writer_says_how_to_build_it_where_it_is_missing(monkeypatch):
    code, _, _ = layer()
    monkeypatch.setattr(cp, "_blockwrite", None)
    assert cp.CpuPath(code).compiled is False  # the NumPy path then
    with pytest.raises(RuntimeError, match="pip install"):
        cp.CpuPath(code, compiled=True)


def test_c_active_blocks_are_numpy_s() -> None:
    """The carrying blocks found in C are NumPy's on the photos, their harsh versions (clipped highlights and
    shadows: many flat blocks) and a constant cover (none carries); a cover off the grid is NumPy's alone."""
    code, _, covers = layer()
    c, reference = cp.CpuPath(code, compiled=True), cp.CpuPath(code, compiled=False)
    flat = np.full((1, *covers.shape[1:]), 128.0, np.float32)
    for batch in (covers, flat, covers[:1] + np.float32(0.25)):
        got, want = c.active_blocks(batch), reference.active_blocks(batch)
        assert got.dtype == bool and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert not c.active_blocks(flat).any() and c.active_blocks(covers).any() and not c.active_blocks(covers).all()
    with pytest.raises(ValueError, match="whole 8 px blocks"):
        off_grid = np.zeros((12, 12, 3), np.float32)
        cp._blockwrite.active_blocks(1, 12, off_grid, np.empty(4, np.uint8), cp.LUMA_WEIGHTS, 1.0)
