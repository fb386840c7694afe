"""The digital layer's channel code: encoding, decoding through errors and erasures, failure on noise, determinism,
and the payload table's interpolation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.model.digital.channel import (
    PAYLOAD_BERS,
    PAYLOAD_BITS,
    ChannelCode,
    make_code,
    payload_for,
)


def _llr(words: np.ndarray, flips: np.ndarray, ber: float) -> np.ndarray:
    """Hard-decision LLRs of ``words`` with the bits in ``flips`` inverted, at the BSC's reliability for ``ber``."""
    signs = 1.0 - 2.0 * (words ^ flips)
    return signs * np.log((1 - ber) / ber)


@pytest.mark.parametrize(("n", "k"), [(64, 32), (2048, 1000), (4096, 3900), (8192, 2500), (8192, 8000)])
def test_round_trip_is_systematic_and_satisfies_the_checks(n: int, k: int) -> None:
    code = ChannelCode(n, k)
    rng = np.random.default_rng(n + k)
    messages = rng.integers(0, 2, (3, k), dtype=np.uint8)
    words = code.encode(messages)
    assert "H" not in vars(code)  # the encoder needs no parity-check matrix (nor scipy): the decoder builds it
    assert words.shape == (3, n) and words.dtype == np.uint8
    assert np.array_equal(words[:, :k], messages)
    assert not ((code.H @ words.T.astype(np.int64)) % 2).any()
    decoded, converged = code.decode(np.where(words == 0, 4.0, -4.0))
    assert np.array_equal(decoded, messages) and converged.all()
    one, ok = code.decode(np.where(words[0] == 0, 4.0, -4.0))
    assert one.shape == (k,) and ok is True and np.array_equal(one, messages[0])


def test_decoder_corrects_flipped_bits_that_an_uncoded_channel_would_keep() -> None:
    # The study's table carries this payload at a raw BER of 0.042 on hard decisions, n = 4096: flip exactly that
    # share of bits in each frame, which every frame of an uncoded channel would get wrong.
    n, ber = 4096, 0.042
    k = payload_for(n, ber, soft=False)
    code = make_code(n, k)
    rng = np.random.default_rng(42)
    messages = rng.integers(0, 2, (10, k), dtype=np.uint8)
    words = code.encode(messages)
    flips = np.zeros_like(words)
    for row in flips:
        row[rng.choice(n, round(ber * n), replace=False)] = 1
    assert (np.any((words ^ flips)[:, :k] != messages, axis=1)).all()
    decoded, converged = code.decode(_llr(words, flips, ber))
    assert np.array_equal(decoded, messages) and converged.all()


def test_twenty_percent_erasures_are_recovered() -> None:
    # Erasures (LLR 0) cost a code no more than their share of capacity: 20 % erased with clean bits elsewhere is
    # capacity 0.8, and a rate-0.6 code reads it.
    n, k = 4096, 2458
    code = make_code(n, k)
    rng = np.random.default_rng(20)
    messages = rng.integers(0, 2, (10, k), dtype=np.uint8)
    llr = np.where(code.encode(messages) == 0, 5.0, -5.0)
    for row in llr:
        row[rng.choice(n, n // 5, replace=False)] = 0.0
    decoded, converged = code.decode(llr)
    assert np.mean(np.all(decoded == messages, axis=1)) >= 0.9
    assert converged.mean() >= 0.9


def test_pure_noise_does_not_converge() -> None:
    code = make_code(4096, 2400)
    llr = np.random.default_rng(5).normal(0.0, 1.5, (5, 4096))
    _, converged = code.decode(llr)
    assert not converged.any()


# The sha256 of H's CSR arrays for (n, k) = (2048, 1500). The matrix is part of the mark's format: the reader must
# build the writer's code in another process, on another machine, with another NumPy. A change to the construction,
# the seed or the profiles changes this value, and marks written before it can no longer be read.
FORMAT_2048_1500 = "e42a2b123142faa2584b4b5f0de7e668e5893f9a9541ad92fcdeba328276103d"


def test_make_code_is_deterministic_and_keeps_the_format() -> None:
    first = make_code(2048, 1500)
    assert make_code(2048, 1500) is first
    assert (ChannelCode(2048, 1500).H != first.H).nnz == 0
    assert first.H.max() == 1, "a column of H1 repeats a row"
    h = first.H
    digest = hashlib.sha256(h.indptr.astype(np.int64).tobytes() + h.indices.astype(np.int64).tobytes()).hexdigest()
    assert digest == FORMAT_2048_1500


def test_bad_input_is_refused() -> None:
    code = make_code(256, 128)
    with pytest.raises(ValueError, match="0 < k < n"):
        ChannelCode(128, 128)
    with pytest.raises(ValueError, match="shape"):
        code.encode(np.zeros(127, np.uint8))
    with pytest.raises(ValueError, match="0 or 1"):
        code.encode(np.full(128, 2))
    with pytest.raises(ValueError, match="shape"):
        code.decode(np.zeros(255))
    with pytest.raises(ValueError, match="NaN"):
        code.decode(np.full(256, np.nan))


def test_payload_table_is_read_and_interpolated() -> None:
    for (n, soft), bits in PAYLOAD_BITS.items():
        assert len(bits) == len(PAYLOAD_BERS)
        assert list(bits) == sorted(bits, reverse=True), "payload must fall as the BER rises"
        for ber, k in zip(PAYLOAD_BERS, bits, strict=True):
            assert payload_for(n, ber, soft) == k
    # Between two studied BERs the payload lies between theirs; below the first it is the first's.
    low, high = payload_for(8192, 0.042), payload_for(8192, 0.064)
    assert high <= payload_for(8192, 0.05) <= low
    assert payload_for(8192, 0.0) == payload_for(8192, PAYLOAD_BERS[0])
    assert payload_for(8192, 0.01) > payload_for(8192, 0.01, soft=False)
    assert payload_for(4096, 0.012) < payload_for(6000, 0.012) < payload_for(8192, 0.012)
    with pytest.raises(ValueError, match="outside"):
        payload_for(8192, 0.2)
    with pytest.raises(ValueError, match="outside"):
        payload_for(1024, 0.01)


def test_the_decoding_worker_gives_the_decoder_s_own_messages(monkeypatch) -> None:
    """Frames decoded in the worker process are those this process decodes; a worker that died is started again;
    switched off, the workers leave the decoding to their caller; two workers decode two requests at once."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.model.digital import channel
    from pipeline.model.digital.channel import ChannelCode, DecodeWorker, DecodeWorkers

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr(channel, "_minsum", None)  # ldpc's decoder, which holds the GIL: the case workers are for
    code = ChannelCode(2048, 1024)
    rng = np.random.default_rng(5)
    words = code.encode(rng.integers(0, 2, (3, 1024)))
    llr = np.where(words == 0, 4.0, -4.0) + rng.normal(0, 2.5, words.shape)
    here = code.decode(llr)
    worker = DecodeWorker()
    got = worker.decode(code.n, code.k, llr)
    assert got is not None and np.array_equal(got[0], here[0]) and np.array_equal(got[1], here[1])
    worker._proc.kill()
    worker._proc.wait()
    again = worker.decode(code.n, code.k, llr)
    assert again is not None and np.array_equal(again[0], here[0])
    monkeypatch.setenv("SRIS_DECODE_WORKER", "0")
    assert DecodeWorkers().decode(code.n, code.k, llr) is None  # switched off: the caller decodes
    monkeypatch.delenv("SRIS_DECODE_WORKER")
    assert DecodeWorkers.count() == 1
    monkeypatch.setenv("SRIS_DECODE_WORKER", "2")
    pool = DecodeWorkers()
    assert pool.count() == 2
    with ThreadPoolExecutor(2) as threads:
        both = list(threads.map(lambda _: pool.decode(code.n, code.k, llr), range(2)))
    assert all(np.array_equal(b[0], here[0]) for b in both)
    assert sum(w._proc is not None for w in pool._workers) >= 1


def test_a_worker_started_before_its_codes_builds_them_when_named_and_stops_cleanly(monkeypatch) -> None:
    """A job starts its worker before its model is loaded, names its codes later (built without a reply, so that
    later replies stay in order), and ends a worker it does not need; a stopped pool starts again on use."""
    from pipeline.model.digital.channel import DecodeWorkers, make_code

    monkeypatch.setenv("SRIS_DECODE_WORKER", "1")
    pool = DecodeWorkers()
    pool.start()
    (worker,) = pool._workers
    first = worker._proc
    assert first is not None and first.poll() is None and worker._codes == ()
    code = make_code(2048, 1024)
    pool.start(((code.n, code.k), (4096, 1024)))
    assert worker._proc is first and worker._codes == ((2048, 1024), (4096, 1024))  # the same process, told
    pool.start(((code.n, code.k),))  # nothing new: no request is sent
    rng = np.random.default_rng(9)
    words = code.encode(rng.integers(0, 2, (2, 1024)))
    llr = np.where(words == 0, 4.0, -4.0) + rng.normal(0, 2.0, words.shape)
    got = pool.decode(code.n, code.k, llr)
    here = code.decode(llr)
    assert got is not None and np.array_equal(got[0], here[0]) and np.array_equal(got[1], here[1])
    pool.stop()
    assert first.poll() is not None and worker._proc is None
    again = pool.decode(code.n, code.k, llr)  # used after all: a fresh worker
    assert again is not None and np.array_equal(again[0], here[0])
    pool.stop()
