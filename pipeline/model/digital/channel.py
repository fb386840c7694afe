"""Channel coding of the digital layer: a systematic irregular repeat-accumulate LDPC code with a soft decoder.

The parity-check matrix is ``H = [H1 | H2]`` (``m = n - k`` rows): ``H1`` (m, k) is a sparse random matrix whose
columns (the message bits) have the weights of a degree profile and whose rows are balanced, and ``H2`` (m, m) is
the dual diagonal (an accumulator), as in DVB-S2 and 5G NR. That structure encodes in linear time for any (n, k):
the parity bits are the running XOR of ``H1 @ message``. The matrix is a function of (n, k) alone (a fixed seed), so
the writer and the reader build the same code without exchanging it.

Decoding is belief propagation (scaled min-sum): the reader's log-likelihood ratios become hard bits and per-bit flip
probabilities, the decoder estimates the flip pattern from the hard bits' syndrome, and the message is the first
``k`` bits of the corrected word. An erasure (LLR 0) is a bit flipped with probability 1/2. The decoder is the
``ldpc`` package's ``BpDecoder``; where the install built it, ``_minsum.c`` runs the same arithmetic in the same
order (the same bits), twice as fast on the layer's largest code and outside the GIL (``docs/model.md``).

The study that chose this code over Reed-Solomon, BCH and the other profiles, and measured the payload table below,
is ``research/ecc_compare.py`` (``docs/evaluation/ecc_compare.md``).
"""

from __future__ import annotations

import functools
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

try:  # the C decoder, built by the install (setup.py); where it could not be, ldpc's
    from pipeline.model.digital import _minsum
except ImportError:
    _minsum = None

# The matrix's seed: part of the format. Changing it (or the profile table) changes every code, and marks written
# before can no longer be read.
SEED = 0x5EC0DE
# An LLR's magnitude is clipped here: beyond it a flip probability underflows to 0 and the decoder's arithmetic
# meets infinities; 30 is a flip probability of 1e-13, certain for any frame this layer writes.
LLR_CLIP = 30.0
# BP iterations before the decoder gives up. A frame that converges does so in far fewer at the payloads of
# PAYLOAD_BITS; the limit bounds the time of a frame that fails.
MAX_ITER = 60
# Min-sum with its messages scaled by MS_SCALING: the study's BP comparison found it within a few bytes of
# sum-product's payload at rates above one half and some 7 % under it at BER 0.15, at a third of its time or less.
BP_METHOD = "minimum_sum"
MS_SCALING = 0.875


@dataclass(frozen=True)
class Profile:
    """The column weights of ``H1``: a fraction ``frac_high`` of the message bits has weight ``high``, the rest
    ``low``. Heavier columns converge first and pull the rest along; too many of them cost threshold."""

    low: int
    high: int
    frac_high: float


# The degree profiles, the best of those the study's profile search tried. At rates of 0.45 and above a fifth of the
# message bits has weight 8 (DVB-S2's rate-1/2 profile). Below, a fixed profile leaves most rows of H1 with one edge
# or none, where the accumulator alone only repeats parity bits and the code gets worse as its rate falls; there the
# message bits have weight 4 and enough of them weight 16 that H1's rows average LOW_RATE_ROW_EDGES edges.
HIGH_RATE = Profile(3, 8, 0.2)
LOW_RATE_BELOW = 0.45
LOW_RATE_ROW_EDGES = 3.0


def profile_for(n: int, k: int) -> Profile:
    """The degree profile the code of rate ``k / n`` uses."""
    rate = k / n
    if rate >= LOW_RATE_BELOW:
        return HIGH_RATE
    # E edges in m = n - k rows: E / k = 4 + 12 f, so rows average (4 + 12 f) k / m edges.
    frac = (LOW_RATE_ROW_EDGES * (1 - rate) / rate - 4) / 12
    return Profile(4, 16, min(1.0, max(0.2, frac)))


def _shuffle(values: np.ndarray, bits: np.random.PCG64) -> np.ndarray:
    """``values`` in a random order drawn from ``bits``' raw output.

    The raw stream of a seeded PCG64 is stable across NumPy versions; ``Generator.permutation`` is not promised to
    be, and the writer and the reader of a mark must build the same matrix whatever NumPy each has.
    """
    return values[np.argsort(bits.random_raw(values.size), kind="stable")]


def _column_rows(m: int, degrees: np.ndarray, bits: np.random.PCG64) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``H1``'s ones: ``degrees[j]`` distinct rows in column j, every row used about equally often.

    The edges are dealt round the rows and shuffled. A column that got a row twice keeps one of them and takes, for
    each repeat, the least used row it does not have yet (few columns at usual rates; most when m is tiny).
    """
    edges = int(degrees.sum())
    rows = _shuffle(np.arange(edges) % m, bits)
    cols = np.repeat(np.arange(degrees.size), degrees)
    key = cols.astype(np.int64) * m + rows
    order = np.argsort(key, kind="stable")
    repeats = order[1:][key[order[1:]] == key[order[:-1]]]
    if repeats.size:
        counts = np.bincount(rows, minlength=m)
        starts = np.concatenate([[0], np.cumsum(degrees)])
        for edge in repeats:
            column = cols[edge]
            free = np.ones(m, bool)  # the rows the column has not got yet, in order (np.setdiff1d's result)
            free[rows[starts[column] : starts[column + 1]]] = False
            free = np.flatnonzero(free)
            counts[rows[edge]] -= 1
            rows[edge] = free[np.argmin(counts[free])]
            counts[rows[edge]] += 1
    return rows, cols


def _message_checks(n: int, k: int, profile: Profile | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ones of ``H1`` (n - k, k) as (rows, cols) int64 arrays: deterministic in (n, k, profile); ``profile``
    defaults to :func:`profile_for`."""
    profile = profile or profile_for(n, k)
    m = n - k
    bits = np.random.PCG64(np.random.SeedSequence([SEED, n, k]))
    degrees = np.full(k, profile.low, dtype=np.int64)
    degrees[: round(profile.frac_high * k)] = profile.high
    # Which message bits are heavy is drawn too, so that no region of the message is better protected than another.
    degrees = np.minimum(_shuffle(degrees, bits), m)
    return _column_rows(m, degrees, bits)


def _parity_check(n: int, k: int, rows: np.ndarray, cols: np.ndarray) -> sp.csr_matrix:
    """The parity-check matrix ``H`` (n - k, n) uint8 CSR: ``[H1 | H2]`` from the ones of ``H1``
    (``_message_checks``)."""
    import scipy.sparse as sp  # the decoder's matrix only: a writer encodes without scipy (0.1 s of import)

    m = n - k
    h1 = sp.csr_matrix((np.ones(rows.size, np.uint8), (rows, cols)), shape=(m, k))
    # The accumulator: row i checks parity bits i and i - 1.
    diag = np.arange(m)
    acc_rows = np.concatenate([diag, diag[1:]])
    acc_cols = np.concatenate([diag, diag[:-1]])
    h2 = sp.csr_matrix((np.ones(acc_rows.size, np.uint8), (acc_rows, acc_cols)), shape=(m, m))
    return sp.hstack([h1, h2], format="csr")


class ChannelCode:
    """A systematic (n, k) LDPC code: ``encode`` appends n - k parity bits to k message bits, ``decode`` reads
    log-likelihood ratios back to the message.

    Attributes:
        n: coded bits per frame.
        k: message bits per frame.
        H: the parity-check matrix, (n - k, n) uint8 CSR.

    One code may be shared by threads: the C decoder keeps no state between calls, and ldpc's decodes are serialised
    by a lock (its decoder keeps per-frame state).
    """

    def __init__(
        self,
        n: int,
        k: int,
        profile: Profile | None = None,
        max_iter: int = MAX_ITER,
        method: str = BP_METHOD,
        scaling: float = MS_SCALING,
        compiled: bool | None = None,
    ) -> None:
        """``compiled``: decode with the C decoder (``_minsum.c``, min-sum with a fixed scaling only); None: where it
        is built and the settings are its own, else with ldpc."""
        if not (isinstance(n, int | np.integer) and isinstance(k, int | np.integer)):
            raise TypeError(f"n and k must be integers, got {type(n).__name__} and {type(k).__name__}")
        if not 0 < k < n:
            raise ValueError(f"need 0 < k < n, got n={n}, k={k}")
        self.n, self.k = int(n), int(k)
        self._rows, self._cols = _message_checks(self.n, self.k, profile)
        self._settings = {"max_iter": max_iter, "bp_method": method, "ms_scaling_factor": scaling}
        own = method == "minimum_sum" and scaling > 0  # ldpc's scaling 0 is a schedule of its own
        if compiled and (_minsum is None or not own):
            raise RuntimeError(
                "the C decoder is not built (reinstall the package with a C compiler)"
                if _minsum is None
                else f"the C decoder runs min-sum with a fixed scaling, not {method} with scaling {scaling}"
            )
        self.compiled = (_minsum is not None and own) if compiled is None else compiled
        self._bp = None  # built on the first decode: a writer only encodes, and importing ldpc costs 0.4 s
        self._lock = threading.Lock()

    @functools.cached_property
    def H(self) -> sp.csr_matrix:
        """The parity-check matrix (n - k, n) uint8 CSR (built on first use: the decoder's, not the encoder's)."""
        return _parity_check(self.n, self.k, self._rows, self._cols)

    @functools.cached_property
    def _structure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``H`` for the C decoder, int32 arrays: ``col_ptr`` (n + 1,) and ``edge_row`` (E,), the rows of each
        column's ones, ascending, column after column; ``row_ptr`` (n - k + 1,) and ``place`` (E,), each of those
        edges' place when the edges are taken row after row, columns ascending. Built from the ones of ``H1`` and
        the accumulator, without scipy."""
        m = self.n - self.k
        diag = np.arange(m)
        rows = np.concatenate([self._rows, diag, diag[1:]])  # parity bit j is checked by rows j and j + 1
        cols = np.concatenate([self._cols, self.k + diag, self.k + diag[:-1]])
        by_column = np.lexsort((rows, cols))
        edge_row, edge_col = rows[by_column], cols[by_column]
        place = np.empty(len(rows), np.int64)
        place[np.lexsort((edge_col, edge_row))] = np.arange(len(rows))
        col_ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=self.n))])
        row_ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=m))])
        return tuple(a.astype(np.int32) for a in (col_ptr, edge_row, row_ptr, place))

    def prepare(self) -> None:
        """Build what ``decode`` needs ahead of its first frame (ldpc's decoder, or the C decoder's arrays)."""
        if self.compiled:
            self._structure  # noqa: B018 (built on first access)
        else:
            self._decoder  # noqa: B018

    @property
    def _decoder(self):
        if self._bp is None:
            from ldpc.bp_decoder import BpDecoder

            self._bp = BpDecoder(self.H, error_rate=0.1, input_vector_type="syndrome", **self._settings)
        return self._bp

    def __repr__(self) -> str:
        return f"ChannelCode(n={self.n}, k={self.k})"

    def encode(self, bits: np.ndarray) -> np.ndarray:
        """The codeword of ``bits``: (k,) or (B, k) 0/1 in, (n,) or (B, n) uint8 out; the message is its first k
        bits."""
        bits = np.asarray(bits)
        if bits.shape[-1:] != (self.k,) or bits.ndim > 2:
            raise ValueError(f"expected message bits of shape (k,) or (B, k) with k={self.k}, got {bits.shape}")
        if bits.size and (bits.min() < 0 or bits.max() > 1):
            raise ValueError("message bits must be 0 or 1")
        message = bits.astype(np.uint8).reshape(-1, self.k)
        # Parity i is the XOR of the message bits row i of H1 checks and of parity i - 1.
        m = self.n - self.k
        checks = np.zeros((len(message), m), np.int64)
        for row, frame in zip(checks, message, strict=True):  # a sparse product without scipy (exact in float64)
            row[:] = np.bincount(self._rows, weights=frame[self._cols], minlength=m).astype(np.int64) & 1
        parity = (np.cumsum(checks, axis=1) & 1).astype(np.uint8)
        return np.concatenate([message, parity], axis=1).reshape(*bits.shape[:-1], self.n)

    def decode(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray | bool]:
        """The message read from log-likelihood ratios.

        Args:
            llr: (n,) or (B, n) float, ``log P(bit = 0) / P(bit = 1)``: positive favours 0, large is certain, 0 is
                an erasure. NaN is not allowed.

        Returns:
            The message bits, (k,) or (B, k) uint8, and whether the decoder converged to a codeword: a bool, or a
            (B,) bool array. A converged word can still be the wrong one: the caller's CRC decides.
        """
        llr = np.asarray(llr, dtype=np.float64)
        if llr.shape[-1:] != (self.n,) or llr.ndim > 2:
            raise ValueError(f"expected LLRs of shape (n,) or (B, n) with n={self.n}, got {llr.shape}")
        if np.isnan(llr).any():
            raise ValueError("LLRs contain NaN")
        frames = llr.reshape(-1, self.n)
        if self.compiled:
            messages, converged, _ = self._decode_compiled(frames)
        else:
            messages = np.empty((frames.shape[0], self.k), np.uint8)
            converged = np.empty(frames.shape[0], bool)
            for i, frame in enumerate(frames):
                messages[i], converged[i] = self._decode_one(frame)
        if llr.ndim == 1:
            return messages[0], bool(converged[0])
        return messages, converged

    def _decode_compiled(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, n) LLRs -> (B, k) messages, (B,) convergence and (B,) int32 rounds run, from the C decoder (the GIL
        released)."""
        hard, flip = _channel(frames)
        b = len(frames)
        messages, converged, rounds = np.empty((b, self.k), np.uint8), np.empty(b, np.uint8), np.empty(b, np.int32)
        settings = self._settings["ms_scaling_factor"], self._settings["max_iter"]
        _minsum.decode(self.n, self.n - self.k, self.k, *self._structure, *settings, flip, hard, messages, converged,
                       rounds)  # fmt: skip
        return messages, converged.astype(bool), rounds

    def _decode_one(self, llr: np.ndarray) -> tuple[np.ndarray, bool]:
        """One frame: hard bits and flip probabilities in, the corrected message and convergence out."""
        hard, flip = _channel(llr)
        syndrome = (self.H @ hard).astype(np.uint8) & 1
        with self._lock:
            self._decoder.update_channel_probs(flip)
            error = self._decoder.decode(syndrome)
            converged = bool(self._decoder.converge)
        return (hard[: self.k] ^ error[: self.k]).astype(np.uint8), converged

    def decode_frames(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` of (B, n) frames, in the decoding worker process where one runs (``DecodeWorker``; by default
        only where the C decoder is not built, as ldpc's holds the GIL): the same decoder, so the same messages,
        while this process's other threads keep running."""
        llr = np.asarray(llr, dtype=np.float64).reshape(-1, self.n)
        result = WORKER.decode(self.n, self.k, llr)
        if result is None:
            return self.decode(llr)
        return result


def _channel(llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LLRs (..., n) -> the hard bits (uint8, 1 where the LLR is negative) and each bit's flip probability (float64),
    what the decoders take."""
    llr = np.ascontiguousarray(llr)  # the C decoder reads rows of bytes; NumPy keeps an operand's layout
    hard = (llr < 0).astype(np.uint8)
    flip = 1.0 / (1.0 + np.exp(np.minimum(np.abs(llr), LLR_CLIP)))
    return hard, flip


class DecodeWorker:
    """One worker process that decodes frames for this process (``ChannelCode.decode_frames``).

    ldpc's belief propagation holds the GIL for the whole decode (about 10 ms a frame at the top level's size), so
    in a threaded job every other stage waits while it runs; in a process of its own it runs beside them on another
    core. The worker is a fresh interpreter (``python -c``, not a fork of the job's threads) that imports only this
    module's light dependencies and serves frames over its stdin and stdout (``serve``), one request at a time
    (``DecodeWorkers`` keeps the job's); if it cannot start or dies, decoding goes on in this process.
    """

    def __init__(self) -> None:
        self._proc = None
        self._lock = threading.Lock()
        self._broken = False
        self._codes: tuple[tuple[int, int], ...] = ()  # the codes the running worker builds or has built

    def start(self, codes: tuple[tuple[int, int], ...] = ()) -> None:
        """Start the worker now, so that the first decode need not wait for it (it imports ldpc at once: about
        0.5 s), and have it build the decoders of ``codes`` (n, k) ahead of their first request; a running worker
        is only sent the codes it has not been given yet. Waits while the worker decodes (its lock)."""
        with self._lock:
            new = tuple(c for c in codes if c not in self._codes)
            if self._proc is not None and self._proc.poll() is None:
                self._send_builds(new)
            self._codes += new
            self._ensure()

    def stop(self) -> None:
        """End the worker (a job that turned out to need none); a later ``start`` or decode starts another."""
        with self._lock:
            if self._proc is not None:
                self._proc.kill()
                self._proc.wait()
            self._proc, self._codes = None, ()

    def _send_builds(self, codes: tuple[tuple[int, int], ...]) -> None:
        import pickle

        try:
            for n, k in codes:  # a request without frames: build the decoder, no reply (``serve``)
                pickle.dump((n, k, None), self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except OSError:  # the worker died: the next request finds out and decodes here
            pass

    def _ensure(self):
        if self._broken:
            return None
        if self._proc is None or self._proc.poll() is not None:
            import os
            import subprocess
            import sys
            from pathlib import Path

            root = str(Path(__file__).resolve().parents[3])  # the folder that holds the pipeline package
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", f"from pipeline.model.digital.channel import serve; serve({self._codes!r})"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
            except OSError:  # no processes here (a sandbox): decode in this process
                self._broken = True
                return None
        return self._proc

    def decode(self, n: int, k: int, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The frames' messages and convergence from the worker, or None where it cannot be used."""
        import pickle

        with self._lock:
            proc = self._ensure()
            if proc is None:
                return None
            try:
                pickle.dump((n, k, llr), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                proc.stdin.flush()
                return pickle.load(proc.stdout)  # the read waits outside the GIL
            except (OSError, EOFError, pickle.UnpicklingError):  # the worker died: decode here from now on
                self._broken = True
                proc.kill()
                return None


def _import_bp_decoder() -> None:
    """Import ldpc's belief-propagation decoder alone, in the worker: ldpc's package ``__init__`` imports every one
    of its decoders, and stim, sinter and pymatching with them (0.4 s of the worker's start-up, on a core the job
    shares; the decoder's own module takes 1 ms). The package is entered as a bare module with ldpc's path, which
    is what importing a subpackage needs; where that fails (another ldpc layout), the package is imported whole."""
    import importlib
    import importlib.util
    import sys
    import types

    if "ldpc" not in sys.modules:
        spec = importlib.util.find_spec("ldpc")
        if spec is not None and spec.submodule_search_locations:
            bare = types.ModuleType("ldpc")
            bare.__path__, bare.__spec__ = list(spec.submodule_search_locations), spec
            sys.modules["ldpc"] = bare
    try:
        importlib.import_module("ldpc.bp_decoder")
    except ImportError:
        sys.modules.pop("ldpc", None)
        importlib.import_module("ldpc.bp_decoder")


def serve(codes: tuple[tuple[int, int], ...] = ()) -> None:
    """The worker's loop (``DecodeWorker``): (n, k, llr) in on stdin, ``make_code(n, k).decode(llr)`` out on stdout,
    until stdin closes."""
    import pickle
    import signal
    import sys

    # Ctrl-C in a terminal reaches the whole process group: the job handles it, and this worker ends when the job
    # closes its end of the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _minsum is None:
        _import_bp_decoder()  # now, while the job starts: a job may start its worker before it knows its codes

    for n, k in codes:  # the job's codes, ready before its first request
        make_code(n, k).prepare()
    while True:
        try:
            n, k, llr = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        if llr is None:  # build the code's decoder ahead of its frames (``DecodeWorker.start``); no reply
            make_code(n, k).prepare()
            continue
        pickle.dump(make_code(n, k).decode(llr), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
        sys.stdout.buffer.flush()


class DecodeWorkers:
    """The job's ``DecodeWorker``s: ``count()`` of them, each request to one that is free. ``SRIS_DECODE_WORKER``:
    ``0`` none (decoding stays in the caller's process), a number that many. Unset: none where the C decoder is
    built (it releases the GIL: the caller's thread decodes beside the job's others, and the job starts no
    interpreter), else one where the machine has two cores or more (two took 3% longer there over 288 images at
    256 px: the job's own threads need the other core; a machine with more cores may want more)."""

    def __init__(self) -> None:
        self._workers: list[DecodeWorker] | None = None
        self._codes: tuple[tuple[int, int], ...] | None = None  # None: not started
        self._free: queue.Queue[DecodeWorker] = queue.Queue()
        self._lock = threading.Lock()

    @staticmethod
    def count() -> int:
        import os

        value = os.environ.get("SRIS_DECODE_WORKER", "").strip()
        if value.isdigit():
            return int(value)
        return 1 if _minsum is None and (os.cpu_count() or 1) >= 2 else 0

    def _pool(self) -> list[DecodeWorker]:
        with self._lock:
            if self._workers is None:
                self._workers = [DecodeWorker() for _ in range(self.count())]
                for w in self._workers:
                    self._free.put(w)
            return self._workers

    def start(self, codes: tuple[tuple[int, int], ...] = ()) -> None:
        """Start the workers now (each takes a fraction of a second to import), ``codes`` built in each
        (``DecodeWorker.start``). A later call returns at once unless it brings codes not given before (a worker's
        lock is held while it decodes): a job starts its workers as it starts, and names its codes once its
        model is loaded."""
        with self._lock:
            known = self._codes
            new = tuple(c for c in codes if known is None or c not in known)
            if known is not None and not new:
                return
            self._codes = (known or ()) + new
        for w in self._pool():
            w.start(new)

    def stop(self) -> None:
        """End the workers (the job needs none after all)."""
        with self._lock:
            self._codes = None
        for w in self._workers or ():
            w.stop()

    def decode(self, n: int, k: int, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The frames' messages and convergence from a free worker, or None where none is used."""
        if not self._pool():
            return None
        worker = self._free.get()
        try:
            return worker.decode(n, k, llr)
        finally:
            self._free.put(worker)


WORKER = DecodeWorkers()


@functools.lru_cache(maxsize=64)
def make_code(n: int, k: int) -> ChannelCode:
    """The (n, k) code, built once per process: the same matrix on every call and in every process."""
    return ChannelCode(n, k)


# Largest safe message bits k per coded bits n and raw bit error rate: frame error rate at most 1 % (bisection
# screened on 100 random frames a step, confirmed on 300 fresh ones), soft (BPSK over AWGN at that hard BER) and hard
# (BSC), made non-increasing in the BER. Written by `python research/ecc_compare.py` (docs/evaluation/ecc_compare.md,
# "The layer's payload table"); rerun it after any change to the code above.
PAYLOAD_BERS: tuple[float, ...] = (0.0002, 0.0008, 0.0036, 0.012, 0.042, 0.064, 0.10, 0.12, 0.15)
PAYLOAD_BITS: dict[tuple[int, bool], tuple[int, ...]] = {
    (2048, True): (2032, 2016, 1968, 1864, 1568, 1392, 1088, 960, 800),
    (2048, False): (1968, 1928, 1816, 1640, 1248, 1008, 808, 656, 472),
    (4096, True): (4064, 4048, 3952, 3760, 3200, 2832, 2272, 2000, 1632),
    (4096, False): (3952, 3888, 3696, 3328, 2480, 2144, 1696, 1472, 1136),
    (8192, True): (8160, 8096, 7968, 7584, 6464, 5792, 4672, 4128, 3360),
    (8192, False): (7968, 7872, 7424, 6848, 5312, 4448, 3456, 3040, 2432),
}


def payload_for(n: int, ber: float, soft: bool = True) -> int:
    """The largest message size k (bits, whole bytes) the study found safe for n coded bits at raw BER ``ber``.

    Between the study's bit error rates the rate k / n is interpolated linearly in log(BER) (the payload falls ever
    faster with log(BER), so the line between two measured points lies under the curve), and between its budgets
    (2048, 4096, 8192) linearly in log2(n); a BER under the smallest studied takes that one's payload.
    Raises ValueError beyond the largest studied BER or outside the budgets' range, where nothing was measured.
    """
    budgets = sorted({budget for budget, _ in PAYLOAD_BITS})
    if not budgets[0] <= n <= budgets[-1]:
        raise ValueError(f"n={n} is outside the studied budgets {budgets[0]}..{budgets[-1]}")
    if not 0 <= ber <= PAYLOAD_BERS[-1]:
        raise ValueError(f"ber={ber} is outside the studied range 0..{PAYLOAD_BERS[-1]}")
    log_ber = np.log(max(ber, PAYLOAD_BERS[0]))
    rates = [
        np.interp(log_ber, np.log(PAYLOAD_BERS), np.asarray(PAYLOAD_BITS[budget, soft]) / budget) for budget in budgets
    ]
    rate = float(np.interp(np.log2(n), np.log2(budgets), rates))
    # Whole bytes: the layer carries bytes, and the table's payloads are whole bytes (the tolerance keeps a table
    # entry from rounding down through the division and multiplication).
    return int(np.floor(rate * n / 8 + 1e-9)) * 8
