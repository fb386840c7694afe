"""The digital layer's NumPy path (``digital/cpu_path.py``) against the torch layer it mirrors, on real photos."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from digital_kit import sample_photos

from pipeline.model.digital import cpu_path as cp
from pipeline.model.digital import modulation as mod
from pipeline.model.digital.keys import Key
from pipeline.model.digital.layer import DigitalLayer

KEY = Key(bytes(range(1, 33)))


@functools.lru_cache(maxsize=1)
def written() -> tuple[DigitalLayer, object, np.ndarray, np.ndarray, np.ndarray]:
    """(layer, prepared, covers (B, N, N, 3) float32, stored stegos by torch, by NumPy (B, N, N, 3) uint8)."""
    photos = sample_photos()
    layer = DigitalLayer(key=KEY)
    prepared = layer.prepare([photos[0]], message_room=16)
    covers = np.stack(photos[1:]).astype(np.float32)
    messages = [f"img-{i}".encode() for i in range(len(covers))]
    with torch.inference_mode():
        x = torch.from_numpy(covers).permute(0, 3, 1, 2) / 255
        t = mod.clip_keeping_luma(layer.embed(x, x, prepared, messages))
        by_torch = cp.round_keeping_luma((t.permute(0, 2, 3, 1) * 255).numpy())  # the jobs' one rounding
    by_numpy = cp.round_keeping_luma(cp.clip_keeping_luma(cp.CpuPath(layer).embed(covers, covers, prepared, messages)))
    return layer, prepared, covers, by_torch, by_numpy


def test_numpy_embed_stores_what_torch_stores():
    _, _, covers, by_torch, by_numpy = written()
    diff = np.abs(by_torch.astype(int) - by_numpy.astype(int))
    # Sums in another order move a value sitting on a rounding boundary: rare, and by a grey level or two.
    assert (diff > 0).mean() < 5e-4 and diff.max() <= 2
    assert not np.array_equal(by_numpy, covers.astype(np.uint8))  # something was written


def _levels(layer, prepared, covers, stegos, messages):
    with torch.inference_mode():
        x = torch.from_numpy(stegos.astype(np.float32)).permute(0, 3, 1, 2) / 255
        c = torch.from_numpy(covers).permute(0, 3, 1, 2) / 255
        by_torch = layer.written_levels(x, c, prepared, messages)
    by_numpy = cp.CpuPath(layer).written_levels(stegos.astype(np.float32), covers, prepared, messages)
    return by_torch, by_numpy


def test_numpy_check_reads_the_levels_torch_reads():
    layer, prepared, covers, _, stegos = written()
    messages = [f"img-{i}".encode() for i in range(len(covers))]
    by_torch, by_numpy = _levels(layer, prepared, covers, stegos, messages)
    assert by_numpy == by_torch and by_numpy[0] == "top"
    # Noise that the top level's code must decode through, and noise it cannot: the decoder's verdicts agree too.
    rng = np.random.default_rng(0)
    noisy = np.clip(stegos + rng.normal(0, [[[[0.6]]], [[[1.2]]], [[[4.0]]]][: len(stegos)], stegos.shape), 0, 255)
    by_torch, by_numpy = _levels(layer, prepared, covers, np.rint(noisy), messages)
    assert by_numpy == by_torch
    assert len(set(by_numpy)) > 1, by_numpy  # the noise levels reached different levels
    another = layer.prepare([sample_photos()[3]], message_room=16)  # codewords the stegos do not carry
    by_torch, by_numpy = _levels(layer, another, covers, stegos, messages)
    assert by_numpy == by_torch == [None] * len(stegos)


def test_soft_readings_agree():
    layer, _, covers, _, stegos = written()
    c = cp.block_dct(cp.luma(stegos.astype(np.float32) + np.float32(0.7)))
    phases = [
        cp.lattice_phase(c[..., cp.coefficient_positions(lv.coeffs)], layer.dither_values(i), layer.step_values(i))
        for i, lv in enumerate(layer.config.levels)
    ]
    prior = cp.CpuPath(layer).active_blocks(covers).astype(np.float32)
    got = cp.soft_read(phases, prior)
    want, _ = mod.soft_read([torch.from_numpy(e) for e in phases], torch.from_numpy(prior))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=2e-3)


@pytest.mark.parametrize("scale", [1.0, 1.15])
def test_clipping_agrees_and_rounding_keeps_luma(scale):
    rng = np.random.default_rng(3)
    x = (rng.uniform(-8, 263, (2, 64, 64, 3)) * scale).astype(np.float32)
    clipped = cp.clip_keeping_luma(x)
    ref = mod.clip_keeping_luma(torch.from_numpy(x), 255.0, dim=-1).numpy()
    np.testing.assert_allclose(clipped, ref, atol=1e-3)
    rounded = cp.round_keeping_luma(clipped)
    assert np.abs(cp.luma(rounded.astype(np.float32) - clipped)).max() <= 0.5 + 1e-4


def _round_by_definition(x: np.ndarray, tolerance: float = cp.LUMA_ROUNDING_TOLERANCE) -> np.ndarray:
    """``round_keeping_luma`` pixel by pixel: the nearest grey levels unless that moves the luma more than
    ``tolerance``; else, of the eight ways of rounding each channel down or up, the one whose luma change lies
    in the same midpoint bin as the fractions' (clipped to 255)."""
    out = np.empty(x.shape, np.uint8)
    for idx in np.ndindex(x.shape[:-1]):
        p = x[idx]
        near = np.round(p)
        if abs(float(cp.luma(near - p))) <= tolerance:
            out[idx] = np.clip(near, 0, 255)
            continue
        low = np.floor(p)
        k = int((cp.luma(p - low) > cp.LUMA_MIDPOINTS).sum())
        out[idx] = np.clip(low + np.array([(k >> 1) & 1, (k >> 2) & 1, k & 1]), 0, 255)
    return out


def test_luma_keeping_rounding_is_its_definition_at_black_white_and_between() -> None:
    rng = np.random.default_rng(11)
    cover = rng.integers(0, 256, (2, 24, 24, 3)).astype(np.float32)
    cover[0, :8] = 255.0  # channels at white whose luma-nearest choice rounds them up: they stay at 255
    cover[1, :8] = 0.0
    x = np.clip(cover + rng.normal(0, 1.5, (2, 24, 24, 1)).astype(np.float32), 0, 255)
    x[0, 8:10] = [[255.0, 254.6, 254.6]]
    np.testing.assert_array_equal(cp.round_keeping_luma(x), _round_by_definition(x))


def test_shared_codewords_are_computed_once_and_per_image_messages_are_not_shared() -> None:
    layer, with_room, *_ = written()
    path = cp.CpuPath(layer)
    shared = layer.prepare([sample_photos()[0]])  # no message field: one codeword per level for every image
    for i in range(len(layer.config.levels)):
        want = path._want(shared, i, [None] * 3)
        assert want.shape[0] == 3 and np.array_equal(want.reshape(3, -1), layer.slot_bits(shared, i, [None] * 3))
        assert np.shares_memory(path._want(shared, i, [None]), want)  # kept, not computed again
    carrier = next(i for i, lv in enumerate(layer.config.levels) if lv.message)
    two = path._want(with_room, carrier, [b"a", b"b"])
    assert np.array_equal(two.reshape(2, -1), layer.slot_bits(with_room, carrier, [b"a", b"b"]))
    assert not np.array_equal(two[0], two[1])


def _flipped_blocks(path: cp.CpuPath, stored: np.ndarray, prepared, messages, active) -> np.ndarray:
    """(B, h, w) bool: blocks where a hard reading of some level differs from its codeword bit."""
    c = cp.block_dct(cp.luma(stored.astype(np.float32)))
    out = np.zeros(active.shape, bool)
    for i in range(len(path.config.levels)):
        want = path._want(prepared, i, messages).astype(bool)
        out |= (path._flipped(c, i, want) & active[..., None]).any(-1)
    return out


@pytest.mark.parametrize(
    ("contrast", "min_flipped", "max_db"),
    [(1.0, 5, 0.02), (1.5, 100, 0.75)],  # the photos as they are; blown highlights and crushed shadows
)
def test_settle_rewrites_the_blocks_storage_flipped_until_every_reading_holds(contrast, min_flipped, max_db):
    layer, prepared, _, _, _ = written()
    photos = np.stack(sample_photos()[1:]).astype(np.float32)
    covers = np.clip((photos - 80) * contrast + 80, 0, 255)
    messages = [f"img-{i}".encode() for i in range(len(covers))]
    path = cp.CpuPath(layer)
    active = path.active_blocks(covers)
    stored = cp.round_keeping_luma(cp.clip_keeping_luma(path.embed(covers, covers, prepared, messages)))
    flipped = _flipped_blocks(path, stored, prepared, messages, active)
    assert flipped.sum() >= min_flipped  # the clip took back enough of the change to flip readings
    before = stored.copy()
    intact = path.settle(stored, prepared, messages, active)
    assert intact.all()
    assert not _flipped_blocks(path, stored, prepared, messages, active).any()
    changed = (stored != before).any(-1).reshape(len(covers), 32, 8, 32, 8).any((2, 4))
    assert changed.any() and not (changed & ~flipped).any()  # only the flipped blocks were rewritten
    cover = np.rint(covers)
    for a, b, c in zip(before, stored, cover, strict=True):  # what the rewrite costs the cover
        assert 10 * np.log10(np.mean((b - c) ** 2) / np.mean((a - c) ** 2)) < max_db
    with torch.inference_mode():  # the check and a reader agree on the settled stegos
        x = torch.from_numpy(stored.astype(np.float32)).permute(0, 3, 1, 2) / 255
        c = torch.from_numpy(covers).permute(0, 3, 1, 2) / 255
        read = [r.level for r in layer.read(x)]
        assert layer.written_levels(x, c, prepared, messages) == read and read.count("top") >= 2


def test_exact_readings_are_no_decode_where_a_smooth_cover_left_too_few_blocks():
    """The third sample photo is smooth: its top level's written readings are all exact, yet they are fewer than
    its payload's bits, and a reader cannot decode it. The check says what the reader reads."""
    layer, prepared, covers, _, stegos = written()
    messages = [f"img-{i}".encode() for i in range(len(covers))]
    path = cp.CpuPath(layer)
    stegos = stegos.copy()
    assert path.settle(stegos, prepared, messages, path.active_blocks(covers)).all()  # every written reading exact
    written_blocks = path.active_blocks(covers).reshape(len(covers), -1).sum(1)
    top = len(layer.config.levels) - 1
    assert not layer.may_decode(top, written_blocks)[2] and layer.sure_when_exact(top, written_blocks)[:2].all()
    with torch.inference_mode():
        x = torch.from_numpy(stegos.astype(np.float32)).permute(0, 3, 1, 2) / 255
        read = [r.level for r in layer.read(x)]
    assert read[2] != "top"
    by_torch, by_numpy = _levels(layer, prepared, covers, stegos, messages)
    assert by_numpy == by_torch == read


def test_settle_reports_what_it_could_not_fix_and_the_check_reads_those_again():
    layer, prepared, _, _, _ = written()
    photos = np.stack(sample_photos()[1:]).astype(np.float32)
    covers = np.clip((photos - 80) * 1.5 + 80, 0, 255)
    path = cp.CpuPath(layer)
    active = path.active_blocks(covers)
    stored = cp.round_keeping_luma(cp.clip_keeping_luma(path.embed(covers, covers, prepared, [None] * 3)))
    intact = path.settle(stored.copy(), prepared, None, active, rounds=0)
    assert not intact.all()  # nothing rewritten: the flipped stegos are reported, not assumed intact
    assert intact.tolist() == [not f.any() for f in _flipped_blocks(path, stored, prepared, [None] * 3, active)]
    with pytest.raises(ValueError, match="contiguous uint8"):
        path.settle(stored.astype(np.float32), prepared, None, active)


def test_the_erasure_table_is_the_studys_and_covers_every_shipped_code():
    """``ERASURE_NEED`` is what ``research/erasure_need.py`` measured, and every level of the shipped models has an
    entry (a code without one is always decoded: correct, but the check's shortcut is lost)."""
    import json
    from pathlib import Path

    from pipeline.model.checkpoint import load_model
    from pipeline.model.digital.codewords import ERASURE_NEED, LayerCode

    study = json.loads((Path(__file__).resolve().parents[1] / "docs/evaluation/erasure_need.json").read_text())
    assert {(r["n"], r["k"]): r["need"] for r in study["codes"]} == ERASURE_NEED
    for name in ("k1", "k2"):
        code = LayerCode(load_model(name).config.digital)
        assert all(code.code_shape(i) in ERASURE_NEED for i in range(len(code.config.levels)))
