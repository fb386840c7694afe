"""The digital layer's C decoder (``digital/_minsum.c``) against ldpc's ``BpDecoder``, which it replaces where it is
built: the same messages, the same convergence and the same rounds, frame for frame."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.model.digital import channel
from pipeline.model.digital.channel import ChannelCode

# CI installs the package (.ci/run), which builds the decoder: there it is always tested; elsewhere it may be absent
# (an install without a C compiler), and the layer decodes with ldpc.
needs_c = pytest.mark.skipif(
    channel._minsum is None and not os.environ.get("CI"), reason="the C decoder is not built (pip install -e .)"
)


def _frames(code: ChannelCode, rng: np.random.Generator, means: list[float]) -> np.ndarray:
    """One noisy frame of a random codeword per mean LLR magnitude (small means do not converge), with a twentieth
    of the bits erased (LLR 0, as a reader's unwritten slots) and a few saturated at the clip."""
    words = code.encode(rng.integers(0, 2, (len(means), code.k)))
    llr = (1 - 2.0 * words) * (np.asarray(means)[:, None] + rng.normal(0, 1.6, words.shape))
    llr[rng.random(llr.shape) < 0.05] = 0.0
    llr[rng.random(llr.shape) < 0.01] *= 100  # beyond LLR_CLIP
    return llr


def _ldpc(code: ChannelCode, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ldpc's messages, convergence and rounds, frame by frame."""
    out = [code._decode_one(frame) for frame in llr]
    rounds = []
    for frame in llr:  # ldpc keeps the last frame's rounds
        code._decode_one(frame)
        rounds.append(code._decoder.iter if (code.H @ (frame < 0) % 2).any() else 0)
    return np.stack([m for m, _ in out]), np.array([c for _, c in out]), np.array(rounds)


@needs_c
@pytest.mark.parametrize(
    ("n", "k"),
    [(4096, 768), (7168, 2400), (24576, 9600), (2048, 1568), (8192, 6464), (600, 200)],
    ids=["base", "main", "top", "high-rate", "8192", "small"],
)
def test_c_decoder_gives_ldpc_s_bits(n: int, k: int) -> None:
    """Frames that converge at once, after many rounds, or never (all 60 rounds: the non-converged word must match
    too, as a reader's CRC sees it), and a clean codeword (zero syndrome, no rounds)."""
    rng = np.random.default_rng(n + k)
    c, reference = ChannelCode(n, k, compiled=True), ChannelCode(n, k, compiled=False)
    llr = _frames(c, rng, [4.0, 2.5, 1.8, 1.4, 1.1, 0.8, 0.4])
    llr = np.concatenate([llr, (1 - 2.0 * c.encode(rng.integers(0, 2, (1, k)))) * 5.0])
    messages, converged, rounds = c._decode_compiled(llr)
    want_messages, want_converged, want_rounds = _ldpc(reference, llr)
    np.testing.assert_array_equal(messages, want_messages)
    np.testing.assert_array_equal(converged, want_converged)
    np.testing.assert_array_equal(rounds, want_rounds)
    assert converged.any() and not converged.all(), "the frames should span converging and failing decodes"
    assert rounds.max() == channel.MAX_ITER and rounds[-1] == 0


@needs_c
def test_c_decoder_takes_frames_in_any_layout_and_agrees_with_decode() -> None:
    """A reader's frames come permuted (``llr[:, perm]``: not C-contiguous) and one at a time; ``decode`` and
    ``decode_frames`` return what the frames decoded one by one return."""
    rng = np.random.default_rng(3)
    code = ChannelCode(4096, 768, compiled=True)
    base = _frames(code, rng, [1.2, 1.0, 0.9])
    perm = rng.permutation(code.n)
    shuffled = np.empty_like(base)
    shuffled[:, perm] = base
    frames = shuffled[:, perm]
    assert not frames.flags.c_contiguous
    batch = code.decode(frames)
    each = [code.decode(f) for f in base]
    np.testing.assert_array_equal(batch[0], np.stack([m for m, _ in each]))
    np.testing.assert_array_equal(batch[1], [c for _, c in each])
    np.testing.assert_array_equal(code.decode_frames(frames)[0], batch[0])


def test_decoder_choice_follows_what_is_built_and_asked(monkeypatch) -> None:
    """The C decoder runs min-sum with a fixed scaling: other settings decode with ldpc, and asking for C where it
    is not built, or for settings it does not run, is an error that says why."""
    assert not ChannelCode(600, 200, method="product_sum").compiled
    assert not ChannelCode(600, 200, scaling=0.0).compiled  # ldpc's adaptive scaling
    with pytest.raises(RuntimeError, match="fixed scaling"):
        ChannelCode(600, 200, method="product_sum", compiled=True)
    monkeypatch.setattr(channel, "_minsum", None)
    assert not ChannelCode(600, 200).compiled
    with pytest.raises(RuntimeError, match="not built"):
        ChannelCode(600, 200, compiled=True)


@needs_c
def test_c_decoder_refuses_buffers_that_do_not_fit() -> None:
    """Wrong sizes or a structure that points outside itself are a ValueError, never a read out of bounds."""
    code = ChannelCode(600, 200, compiled=True)
    col_ptr, edge_row, row_ptr, place = code._structure
    hard, p = np.zeros((1, 600), np.uint8), np.full((1, 600), 0.1)
    out = np.empty((1, 200), np.uint8), np.empty(1, np.uint8), np.empty(1, np.int32)

    def run(*structure, frames=(p, hard)):
        channel._minsum.decode(600, 400, 200, *structure, 0.875, 60, *frames, *out)

    run(col_ptr, edge_row, row_ptr, place)  # fits
    with pytest.raises(ValueError, match="sizes"):
        run(col_ptr[:-1], edge_row, row_ptr, place)
    with pytest.raises(ValueError, match="sizes"):
        run(col_ptr, edge_row, row_ptr, place, frames=(p[:, :-1], hard))
    bad = edge_row.copy()
    bad[5] = 400  # a row that is not there
    with pytest.raises(ValueError, match="outside"):
        run(col_ptr, bad, row_ptr, place)
    bad = place.copy()
    bad[0] = -1
    with pytest.raises(ValueError, match="outside"):
        run(col_ptr, edge_row, row_ptr, bad)


def test_decoding_workers_start_only_where_the_decoder_holds_the_gil(monkeypatch) -> None:
    """The C decoder releases the GIL: a job decodes in its own threads and starts no worker process; with ldpc's
    decoder one worker runs on a machine of two cores; ``SRIS_DECODE_WORKER`` overrides both."""
    monkeypatch.delenv("SRIS_DECODE_WORKER", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr(channel, "_minsum", object())
    assert channel.DecodeWorkers.count() == 0
    monkeypatch.setattr(channel, "_minsum", None)
    assert channel.DecodeWorkers.count() == 1
    monkeypatch.setenv("SRIS_DECODE_WORKER", "2")
    assert channel.DecodeWorkers.count() == 2
