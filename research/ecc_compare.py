"""Which error-correcting code carries most bytes through the digital layer's raw bit errors, and how fast it decodes.

    python research/ecc_compare.py [--frames 300] [--out docs/evaluation/ecc_compare.md]

Channels: (hard) a binary symmetric channel at the raw bit error rate; (soft) BPSK over AWGN whose hard decisions
have that error rate, read as LLR = 2y / sigma^2. Independent bit errors are what a whole-image interleaver gives a
code. For each code family, frame of n coded bits and BER the study finds the largest payload whose frame error rate
(a decoded message that differs from the sent one) is at most 1 %:

- LDPC: the layer's code (``pipeline.model.digital.channel``), an IRA parity-check matrix decoded by the ``ldpc``
  package's BP (scaled min-sum), soft and hard. Found by bisection over the payload, each step screened on
  ``--screen-frames`` random frames (a step stops early once it has more failures than 1 % of them allows), the
  result confirmed on ``--frames`` fresh ones. Its degree profile is chosen first by the
  same search at n = 4096 over a few profiles (``--profile-frames`` frames a step).
- Reed-Solomon over GF(2^8) (``creedsolo``), bytes in as few shortened codewords as fit the frame; BCH
  (``bchlib``, t <= 64, the frame split into as many codewords as carries most). Both decode up to a known number of
  errors and fail beyond, so their frame error rate is exact (binomial tails) and the payload found from it; each
  point is then simulated with real frames to confirm it and time the decoder. ``galois`` (RS and BCH) and pure
  Python ``reedsolo`` are timed on the same codes.
- RS outer + BCH inner: a bound, not a simulation: every failed inner word is assumed detected and erased, erasures
  assumed independent (an ideal interleaver) and no miscorrection; what a concatenation could do at best.
- BP + OSD (``ldpc``'s BpOsdDecoder) on the LDPC code: whether an ordered-statistics fallback adds payload.

Times are one thread of this machine's CPU (printed into the report), per frame, after a warm-up.
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import binom, norm

from pipeline.model.digital.channel import MAX_ITER, PAYLOAD_BERS, ChannelCode, Profile, make_code

BUDGETS = (2048, 4096, 8192)
TARGET_FER = 0.01
BCH_MAX_T = 64  # bchlib (the Linux kernel's BCH) accepts no stronger code
# Candidate degree profiles; None is the layer's rule (profile_for: d3+0.2xd8 at rates >= 0.45, below it d4 with
# enough d16 for three H1 edges per row).
PROFILES: tuple[Profile | None, ...] = (
    Profile(3, 3, 0.0),
    Profile(3, 8, 0.2),
    Profile(3, 12, 0.1),
    Profile(3, 12, 1 / 3),
    Profile(4, 16, 1 / 3),
    None,
)
PROFILE_CASES = ((0.0008, True), (0.012, True), (0.064, True), (0.12, True), (0.15, True), (0.15, False))


# ---------------------------------------------------------------------------------------------------------- channels
def sigma_for(ber: float) -> float:
    """The AWGN standard deviation at which BPSK's hard decisions err with probability ``ber``."""
    return float(1.0 / norm.isf(ber))


def transmit(codewords: np.ndarray, ber: float, soft: bool, rng: np.random.Generator) -> np.ndarray:
    """LLRs (positive favours 0) of (B, n) 0/1 codewords sent over the soft or hard channel."""
    signs = 1.0 - 2.0 * codewords
    if soft:
        sigma = sigma_for(ber)
        return 2.0 * (signs + rng.normal(0.0, sigma, codewords.shape)) / sigma**2
    flips = rng.random(codewords.shape) < ber
    return np.where(flips, -signs, signs) * math.log((1 - ber) / ber)


def capacity(ber: float, soft: bool) -> float:
    """Capacity in bits per coded bit: the BSC's, or binary-input AWGN's at the same hard BER."""
    if not soft:
        return 1.0 + ber * math.log2(ber) + (1 - ber) * math.log2(1 - ber)
    sigma = sigma_for(ber)
    nodes, weights = np.polynomial.hermite_e.hermegauss(160)
    y = 1.0 + sigma * nodes
    return float(1.0 - np.sum(weights * np.logaddexp(0.0, -2.0 * y / sigma**2)) / math.sqrt(2 * math.pi) / math.log(2))


# -------------------------------------------------------------------------------------------------------- searching
def count_failures(run: Callable[[int], int], frames: int, batch: int = 20) -> tuple[int, int]:
    """Failures and frames tested: ``run(b)`` sends b frames and returns its failures; stops once they exceed 1 %."""
    allowed = int(TARGET_FER * frames)
    failures = tested = 0
    while tested < frames and failures <= allowed:
        size = min(batch, frames - tested)
        failures += run(size)
        tested += size
    return failures, tested


def largest_passing(passes: Callable[[int], bool], high: int, step: int) -> int:
    """The largest multiple of ``step`` below ``high`` for which ``passes`` holds, by bisection (0 is assumed to
    pass, ``high`` rounded down to a multiple of ``step`` to fail)."""
    low, high = 0, high // step * step
    while high - low > step:
        mid = low + (high - low) // (2 * step) * step
        if passes(mid):
            low = mid
        else:
            high = mid
    return low


@dataclass
class Point:
    """One measured payload: the largest k (bytes) and what was seen there."""

    k_bytes: int
    frames: int
    failures: int
    encode_ms: float
    decode_ms: float


# ------------------------------------------------------------------------------------------------------------- LDPC
def ldpc_trial(
    code: ChannelCode, ber: float, soft: bool, seed: int, frames: int, timing: list[float] | None = None
) -> tuple[int, int]:
    """Failures of ``frames`` random frames through ``code``; appends (encode s, decode s, frames) to ``timing``."""
    rng = np.random.default_rng(seed)
    spent = [0.0, 0.0, 0]

    def run(size: int) -> int:
        messages = rng.integers(0, 2, (size, code.k), dtype=np.uint8)
        start = time.perf_counter()
        words = code.encode(messages)
        spent[0] += time.perf_counter() - start
        llr = transmit(words, ber, soft, rng)
        start = time.perf_counter()
        decoded, _ = code.decode(llr)
        spent[1] += time.perf_counter() - start
        spent[2] += size
        return int(np.any(decoded != messages, axis=1).sum())

    result = count_failures(run, frames)
    if timing is not None:
        timing[:] = spent
    return result


def ldpc_payload(
    n: int,
    ber: float,
    soft: bool,
    frames: int,
    build: Callable[[int, int], ChannelCode] = make_code,
    screen: int | None = None,
) -> Point:
    """The largest payload of the LDPC code ``build(n, k)`` at 1 % frame errors.

    Bisection screens each payload on ``screen`` frames (default ``frames``; the same noise at every payload), then
    the payload found is confirmed on ``frames`` fresh ones, stepping down while it fails there.
    """
    seed = n * 1_000_003 + round(ber * 1e6) * 2 + int(soft)
    allowed = int(TARGET_FER * frames)
    screen = screen or frames

    def passes(k_bytes: int) -> bool:
        return ldpc_trial(build(n, 8 * k_bytes), ber, soft, seed, screen)[0] <= int(TARGET_FER * screen)

    step = max(1, n // 2048)
    k_bytes = largest_passing(passes, min(math.ceil(capacity(ber, soft) * n / 8) + 1, n // 8), step)
    # Confirm on fresh noise; a payload that fails there steps down until one passes.
    while k_bytes > 0:
        timing: list[float] = []
        failures, tested = ldpc_trial(build(n, 8 * k_bytes), ber, soft, seed + 1, frames, timing)
        if failures <= allowed:
            return Point(k_bytes, tested, failures, 1e3 * timing[0] / timing[2], 1e3 * timing[1] / timing[2])
        k_bytes -= step
    return Point(0, 0, 0, float("nan"), float("nan"))


def ldpc_failing_frame_ms(n: int, k: int, repeats: int = 5) -> float:
    """Decode time of a frame that does not converge (pure noise): every iteration up to MAX_ITER."""
    code = make_code(n, k)
    llr = np.random.default_rng(0).normal(0.0, 1.0, (repeats, n))
    start = time.perf_counter()
    code.decode(llr)
    return 1e3 * (time.perf_counter() - start) / repeats


def profile_search(frames: int) -> list[dict]:
    """Largest payload of each candidate degree profile at n = 4096."""
    rows = []
    for profile in PROFILES:
        for ber, soft in PROFILE_CASES:
            point = ldpc_payload(4096, ber, soft, frames, lambda n, k, p=profile: ChannelCode(n, k, profile=p))
            rows.append(
                dict(
                    study="profile",
                    family=f"LDPC IRA {_profile_name(profile)}",
                    library="ldpc",
                    channel="soft" if soft else "hard",
                    n=4096,
                    ber=ber,
                    **vars(point),
                )
            )
            print(f"profile {_profile_name(profile)} ber {ber} soft {soft}: {point.k_bytes} B", flush=True)
    return rows


def _profile_name(profile: Profile | None) -> str:
    if profile is None:
        return "by rate (the layer's)"
    if profile.frac_high == 0:
        return f"d{profile.low}"
    return f"d{profile.low}+{profile.frac_high:.2g}xd{profile.high}"


DECODERS = (("product_sum", 1.0), ("minimum_sum", 0.75), ("minimum_sum", 0.875), ("minimum_sum", 0.9375))


def decoder_comparison(frames: int) -> list[dict]:
    """Largest soft payload at n = 4096 of sum-product and of min-sum at a few scalings, on the layer's matrices."""
    rows = []
    for method, scaling in DECODERS:
        for ber in (0.012, 0.064, 0.15):
            point = ldpc_payload(
                4096, ber, True, frames, lambda n, k, m=method, s=scaling: ChannelCode(n, k, method=m, scaling=s)
            )
            name = "sum-product" if method == "product_sum" else f"min-sum x{scaling:g}"
            rows.append(
                dict(
                    study="decoder",
                    family=f"LDPC IRA, {name}",
                    library="ldpc",
                    channel="soft",
                    n=4096,
                    ber=ber,
                    **vars(point),
                )
            )
            print(f"decoder {name} ber {ber}: {point.k_bytes} B, {point.decode_ms:.1f} ms", flush=True)
    return rows


def polar_reliability(n: int, z0: float) -> np.ndarray:
    """Bhattacharyya parameters of the n synthetic channels of a polar code over a channel of parameter ``z0``, in
    the index order of sionna's encoder (checked against the 5G ranking at n = 1024: 501 of 512 message positions
    agree)."""
    z = np.array([z0])
    for _ in range(int(math.log2(n))):
        z = np.stack([2 * z - z * z, z * z], axis=1).reshape(-1)
    return z


def polar_check(rows: list[dict], frames: int) -> list[dict]:
    """CRC-aided SCL (list 8, CRC-16; sionna) polar codes designed for each channel, at n = 2048, at the LDPC
    payload and 5 % and 10 % under it (message bytes, the CRC not counted)."""
    try:
        import torch
        from sionna.phy.fec.crc import CRCEncoder
        from sionna.phy.fec.polar import PolarEncoder, PolarSCLDecoder
    except ImportError:
        print("polar: sionna is not installed (pip install sionna-no-rt), skipped")
        return []
    torch.set_num_threads(1)
    out = []
    for ber in (0.012, 0.042, 0.12):
        ldpc = _payload(rows, "LDPC IRA", "soft", 2048)[ber]["k_bytes"]
        sigma = sigma_for(ber)
        order = np.argsort(polar_reliability(2048, math.exp(-1 / (2 * sigma**2))), kind="stable")
        for share in (1.0, 0.95, 0.9):
            k_bytes = int(ldpc * share)
            crc = CRCEncoder("CRC16")
            info = order[: 8 * k_bytes + crc.crc_length]
            frozen = np.setdiff1d(np.arange(2048), info)
            encoder, decoder = (
                PolarEncoder(frozen, 2048),
                PolarSCLDecoder(frozen, 2048, list_size=8, crc_degree="CRC16"),
            )
            rng = np.random.default_rng(17)
            messages = rng.integers(0, 2, (frames, 8 * k_bytes)).astype(np.float32)
            start = time.perf_counter()
            words = encoder(crc(torch.from_numpy(messages))).numpy().astype(np.uint8)
            encode_s = time.perf_counter() - start
            llr = torch.from_numpy(transmit(words, ber, True, rng).astype(np.float32))
            start = time.perf_counter()
            decoded = decoder(llr).numpy()[:, : 8 * k_bytes]
            decode_s = time.perf_counter() - start
            failures = int(np.any(decoded != messages, axis=1).sum())
            out.append(
                dict(study="polar", family="Polar CA-SCL8", library="sionna", channel="soft", n=2048, ber=ber,
                     k_bytes=k_bytes, frames=frames, failures=failures, encode_ms=1e3 * encode_s / frames,
                     decode_ms=1e3 * decode_s / frames)
            )  # fmt: skip
            print(f"polar ber {ber} k {k_bytes}: {failures}/{frames}, {1e3 * decode_s / frames:.0f} ms", flush=True)
    return out


def osd_check(frames: int) -> list[dict]:
    """BP + OSD-CS (order 4) on the layer's code, at the BP payload and 2 % over it: does the fallback carry more?"""
    from ldpc import BpOsdDecoder

    rows = []
    for n, ber in ((4096, 0.042),):
        base = ldpc_payload(n, ber, True, frames)
        for extra in (0.0, 0.02):
            k_bytes = int(base.k_bytes * (1 + extra))
            code = make_code(n, 8 * k_bytes)
            decoder = BpOsdDecoder(
                code.H, error_rate=0.1, max_iter=MAX_ITER, bp_method="product_sum", osd_method="osd_cs", osd_order=4
            )
            rng = np.random.default_rng(7)
            spent = [0.0]

            def run(size: int, code=code, decoder=decoder, rng=rng, spent=spent, ber=ber) -> int:
                messages = rng.integers(0, 2, (size, code.k), dtype=np.uint8)
                llr = transmit(code.encode(messages), ber, True, rng)
                failures = 0
                start = time.perf_counter()
                for message, frame in zip(messages, llr, strict=True):
                    hard = (frame < 0).astype(np.uint8)
                    decoder.update_channel_probs(1.0 / (1.0 + np.exp(np.minimum(np.abs(frame), 30.0))))
                    error = decoder.decode((code.H @ hard).astype(np.uint8) & 1)
                    failures += int(np.any((hard ^ error)[: code.k] != message))
                spent[0] += time.perf_counter() - start
                return failures

            failures, tested = count_failures(run, frames)
            bp_failures, bp_tested = ldpc_trial(code, ber, True, 7, frames)
            rows.append(
                dict(
                    study="osd",
                    family="LDPC IRA, BP+OSD-CS4",
                    library="ldpc",
                    channel="soft",
                    n=n,
                    ber=ber,
                    k_bytes=k_bytes,
                    frames=tested,
                    failures=failures,
                    encode_ms=float("nan"),
                    decode_ms=1e3 * spent[0] / tested,
                    bp_failures=bp_failures,
                    bp_frames=bp_tested,
                )
            )
            print(f"osd n {n} ber {ber} k {k_bytes}: osd {failures}/{tested}, bp {bp_failures}/{bp_tested}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------- algebraic codes
def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def rs_layout(n: int, ber: float) -> tuple[list[int], list[int]] | None:
    """Codeword and message lengths (bytes) of the largest RS payload at 1 % frame errors (exact: a codeword fails
    when more than nsym / 2 bytes are wrong), or None if none fits."""
    lengths = split(n // 8, math.ceil(n // 8 / 255))
    byte_error = 1.0 - (1.0 - ber) ** 8
    # A codeword of length L with nsym parity bytes fails with probability P(Binom(L, q) > nsym // 2); give each
    # codeword the least parity that keeps its share of the frame's failure rate.
    share = 1.0 - (1.0 - TARGET_FER) ** (1.0 / len(lengths))
    messages = []
    for length in lengths:
        nsym = next((s for s in range(2, length) if binom.sf(s // 2, length, byte_error) <= share), None)
        if nsym is None:
            return None
        messages.append(length - nsym)
    return lengths, messages


def rs_frame_error(lengths: list[int], messages: list[int], ber: float) -> float:
    byte_error = 1.0 - (1.0 - ber) ** 8
    ok = np.prod([binom.cdf((ln - k) // 2, ln, byte_error) for ln, k in zip(lengths, messages, strict=True)])
    return float(1.0 - ok)


def bits_of(data: np.ndarray) -> np.ndarray:
    return np.unpackbits(data, axis=-1)


def flip_bytes(frames: np.ndarray, ber: float, rng: np.random.Generator) -> np.ndarray:
    """(B, bytes) uint8 through the BSC: each bit flipped with probability ``ber``."""
    bits = bits_of(frames)
    return np.packbits(bits ^ (rng.random(bits.shape) < ber), axis=-1)


def rs_simulate(lengths: list[int], messages: list[int], ber: float, frames: int, library: str) -> Point:
    """Real RS frames through the BSC: failures and per-frame times of ``library`` (creedsolo, reedsolo, galois)."""
    rng = np.random.default_rng(11)
    total = sum(messages)
    data = rng.integers(0, 256, (frames, total), dtype=np.uint8)
    encode_s = decode_s = 0.0
    failures = 0
    if library == "galois":
        import galois

        field = galois.GF(2**8)
        codes = [galois.ReedSolomon(255, 255 - (ln - k)) for ln, k in zip(lengths, messages, strict=True)]
        for code, k in zip(codes, messages, strict=True):  # compile each code's routines, error path too, untimed
            word = code.encode(field(data[0, :k]))
            word[0] += field(1)
            code.decode(word)
    else:
        module = __import__(library)
        codes = [module.RSCodec(ln - k, nsize=ln) for ln, k in zip(lengths, messages, strict=True)]
    offsets = np.cumsum([0, *messages])
    for frame in data:
        start = time.perf_counter()
        parts = [frame[offsets[i] : offsets[i + 1]] for i in range(len(codes))]
        if library == "galois":
            words = [np.asarray(code.encode(field(part))) for code, part in zip(codes, parts, strict=True)]
        else:
            words = [
                np.frombuffer(code.encode(bytearray(part.tobytes())), np.uint8)
                for code, part in zip(codes, parts, strict=True)
            ]
        encode_s += time.perf_counter() - start
        received = [flip_bytes(w[None].astype(np.uint8), ber, rng)[0] for w in words]
        start = time.perf_counter()
        ok = True
        for code, word, part in zip(codes, received, parts, strict=True):
            try:
                if library == "galois":
                    out = np.asarray(code.decode(field(word)))
                else:
                    out = np.frombuffer(bytes(code.decode(bytearray(word.tobytes()))[0]), np.uint8)
                ok &= np.array_equal(out, part)
            except Exception:  # the libraries raise their own error type on an uncorrectable word
                ok = False
        decode_s += time.perf_counter() - start
        failures += int(not ok)
    return Point(total, frames, failures, 1e3 * encode_s / frames, 1e3 * decode_s / frames)


def bch_layout(n: int, ber: float) -> tuple[int, int, int, int] | None:
    """(codewords, m, t, data bytes per codeword) of the largest bchlib payload at 1 % frame errors, exact."""
    best = None
    for parts in (1, 2, 4, 8, 16, 32):
        length = n // parts
        m = math.floor(math.log2(length + 1))
        if m < 5:
            continue
        usable = min(length, 2**m - 1)
        for t in range(1, BCH_MAX_T + 1):
            ecc_bytes = math.ceil(m * t / 8)
            data = min((usable - m * t) // 8, usable // 8 - ecc_bytes)
            if data <= 0:
                break
            word_bits = 8 * (data + ecc_bytes)
            fer = 1.0 - binom.cdf(t, word_bits, ber) ** parts
            if fer <= TARGET_FER:
                if best is None or parts * data > best[0] * best[3]:
                    best = (parts, m, t, data)
                break  # a stronger t only shortens the data
    return best


def bch_simulate(layout: tuple[int, int, int, int], ber: float, frames: int, library: str) -> Point:
    """Real BCH frames through the BSC: failures and per-frame times of ``library`` (bchlib or galois)."""
    parts, m, t, data_bytes = layout
    rng = np.random.default_rng(13)
    data = rng.integers(0, 256, (frames, parts, data_bytes), dtype=np.uint8)
    encode_s = decode_s = 0.0
    failures = 0
    if library == "bchlib":
        import bchlib

        bch = bchlib.BCH(t, m=m)
    else:
        import galois

        # galois's BCH of the same length and strength, shortened to the same data bits
        code = galois.BCH(2**m - 1, 2**m - 1 - m * t)
        word = code.encode(galois.GF2(np.zeros(8 * data_bytes, np.uint8)))
        word[0] ^= galois.GF2(1)
        code.decode(word)  # compile its routines, error path too, before timing
    for frame in data:
        ok = True
        for part in frame:
            start = time.perf_counter()
            if library == "bchlib":
                ecc = np.frombuffer(bytes(bch.encode(bytearray(part.tobytes()))), np.uint8)
                word = np.concatenate([part, ecc])
            else:
                word = np.asarray(code.encode(galois.GF2(bits_of(part))))
            encode_s += time.perf_counter() - start
            if library == "bchlib":
                received = flip_bytes(word[None], ber, rng)[0]
            else:
                received = word ^ (rng.random(word.shape) < ber).astype(np.uint8)
            start = time.perf_counter()
            if library == "bchlib":
                body, ecc = bytearray(received[:data_bytes].tobytes()), bytearray(received[data_bytes:].tobytes())
                corrected = bch.decode(body, ecc) >= 0
                if corrected:
                    bch.correct(body, ecc)
                ok &= corrected and bytes(body) == part.tobytes()
            else:
                out = np.asarray(code.decode(galois.GF2(received)))
                ok &= np.array_equal(out, bits_of(part))
            decode_s += time.perf_counter() - start
        failures += int(not ok)
    return Point(parts * data_bytes, frames, failures, 1e3 * encode_s / frames, 1e3 * decode_s / frames)


def concatenated_bound(n: int, ber: float) -> int:
    """Bytes of the best RS (outer, erasures) + bchlib BCH (inner) concatenation, at its most optimistic: every
    failed inner word detected and erased, erasures independent, no miscorrection."""
    best = 0
    for parts in (4, 8, 16, 32, 64, 128):
        length = n // parts
        m = math.floor(math.log2(length + 1))
        if m < 5:
            continue
        usable = min(length, 2**m - 1)
        for t in range(1, BCH_MAX_T + 1):
            inner_bytes = (usable - m * t) // 8
            if inner_bytes <= 0:
                break
            erased = float(binom.sf(t, usable, ber))
            outer = split(parts * inner_bytes, math.ceil(parts * inner_bytes / 255))
            share = 1.0 - (1.0 - TARGET_FER) ** (1.0 / len(outer))
            # An RS codeword of length L and K message bytes decodes up to L - K erasures.
            carried = 0
            for length_out in outer:
                nsym = next((s for s in range(length_out) if binom.sf(s, length_out, erased) <= share), None)
                if nsym is None:
                    carried = -1
                    break
                carried += length_out - nsym
            best = max(best, carried)
    return best


# ------------------------------------------------------------------------------------------------------- the study
def algebraic_rows(frames: int) -> list[dict]:
    """RS (creedsolo), BCH (bchlib) and the concatenation bound at every budget and BER; hard decisions only."""
    rows = []
    for n in BUDGETS:
        for ber in PAYLOAD_BERS:
            common = dict(n=n, ber=ber, channel="hard")
            rs = rs_layout(n, ber)
            if rs is None:
                rows.append(dict(study="payload", family="RS GF(2^8)", library="creedsolo", k_bytes=0, **common))
            else:
                point = rs_simulate(*rs, ber, frames, "creedsolo")
                rows.append(
                    dict(
                        study="payload",
                        family="RS GF(2^8)",
                        library="creedsolo",
                        **vars(point),
                        **common,
                        exact_fer=rs_frame_error(*rs, ber),
                        layout=f"{len(rs[0])} x RS({max(rs[0])},{max(rs[1])})",
                    )
                )
            bch = bch_layout(n, ber)
            if bch is None:
                rows.append(dict(study="payload", family="BCH", library="bchlib", k_bytes=0, **common))
            else:
                parts, m, t, data = bch
                point = bch_simulate(bch, ber, frames, "bchlib")
                fer = 1.0 - binom.cdf(t, 8 * (data + math.ceil(m * t / 8)), ber) ** parts
                rows.append(
                    dict(
                        study="payload",
                        family="BCH",
                        library="bchlib",
                        **vars(point),
                        **common,
                        exact_fer=fer,
                        layout=f"{parts} x BCH(m={m}, t={t})",
                    )
                )
            bound = concatenated_bound(n, ber)
            rows.append(
                dict(study="payload", family="RS + BCH bound", library="bchlib+creedsolo", k_bytes=bound, **common)
            )
            print(
                f"algebraic n {n} ber {ber}: RS {rs and sum(rs[1])} BCH {bch and bch[0] * bch[3]} concat {bound}",
                flush=True,
            )
    return rows


def library_speed(frames: int) -> list[dict]:
    """The same RS and BCH codes decoded by each library, at n = 8192 (RS: BER 0.0036; BCH: BER 0.0008)."""
    rows = []
    rs = rs_layout(8192, 0.0036)
    for library in ("creedsolo", "reedsolo", "galois"):
        point = rs_simulate(*rs, 0.0036, frames, library)
        rows.append(
            dict(study="speed", family="RS GF(2^8)", library=library, channel="hard", n=8192, ber=0.0036, **vars(point))
        )
    bch = bch_layout(8192, 0.0008)
    for library in ("bchlib", "galois"):
        point = bch_simulate(bch, 0.0008, frames, library)
        rows.append(
            dict(study="speed", family="BCH", library=library, channel="hard", n=8192, ber=0.0008, **vars(point))
        )
    for row in rows:
        print(f"speed {row['family']} {row['library']}: decode {row['decode_ms']:.2f} ms", flush=True)
    return rows


def ldpc_rows(frames: int, screen: int) -> list[dict]:
    rows = []
    for n in BUDGETS:
        for soft in (True, False):
            for ber in PAYLOAD_BERS:
                start = time.perf_counter()
                point = ldpc_payload(n, ber, soft, frames, screen=screen)
                rows.append(
                    dict(
                        study="payload",
                        family="LDPC IRA",
                        library="ldpc",
                        channel="soft" if soft else "hard",
                        n=n,
                        ber=ber,
                        **vars(point),
                        failing_ms=ldpc_failing_frame_ms(n, 8 * max(point.k_bytes, 1)),
                    )
                )
                took = time.perf_counter() - start
                print(
                    f"ldpc n {n} {'soft' if soft else 'hard'} ber {ber}: {point.k_bytes} B "
                    f"({point.failures}/{point.frames}, {point.decode_ms:.1f} ms) in {took:.0f} s",
                    flush=True,
                )
    return rows


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per payload test (1 %% of them may fail)")
    parser.add_argument("--screen-frames", type=int, default=100, help="frames per bisection step before the confirm")
    parser.add_argument("--profile-frames", type=int, default=100, help="frames per step of the profile search")
    parser.add_argument("--out", type=Path, default=Path("docs/evaluation/ecc_compare.md"))
    parser.add_argument("--skip-profiles", action="store_true", help="skip the degree-profile search")
    parser.add_argument(
        "--report-only",
        type=float,
        metavar="MINUTES",
        help="rewrite the report and figure from the Parquet of a run that took MINUTES",
    )
    args = parser.parse_args()
    if args.report_only is not None:
        table = pq.read_table(args.out.with_suffix(".parquet")).to_pylist()
        rows = [{key: value for key, value in row.items() if value is not None} for row in table]
        write(rows, args.out, args.frames, args.screen_frames, 60 * args.report_only)
        return
    start = time.perf_counter()
    rows = [] if args.skip_profiles else profile_search(args.profile_frames)
    rows += decoder_comparison(args.profile_frames)
    rows += ldpc_rows(args.frames, args.screen_frames)
    rows += algebraic_rows(args.frames)
    rows += library_speed(min(args.frames, 40))
    rows += osd_check(min(args.frames, 100))
    rows += polar_check(rows, min(args.frames, 100))
    for row in rows:
        row["capacity_bytes"] = capacity(row["ber"], row["channel"] == "soft") * row["n"] / 8
    elapsed = time.perf_counter() - start
    write(rows, args.out, args.frames, args.screen_frames, elapsed)


# -------------------------------------------------------------------------------------------------------- reporting
COLUMNS = (
    "study",
    "family",
    "library",
    "channel",
    "n",
    "ber",
    "k_bytes",
    "frames",
    "failures",
    "encode_ms",
    "decode_ms",
    "failing_ms",
    "exact_fer",
    "layout",
    "bp_failures",
    "bp_frames",
    "capacity_bytes",
)


def write(rows: list[dict], out: Path, frames: int, screen: int, elapsed: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    table = {c: [row.get(c) for row in rows] for c in COLUMNS}
    pq.write_table(pa.table(table), out.with_suffix(".parquet"))
    plot(rows, out.with_suffix(".png"))
    out.write_text(report(rows, frames, screen, elapsed, out.with_suffix(".png").name), encoding="utf-8")
    print(f"wrote {out} in {elapsed / 60:.1f} min")


def _payload(rows: list[dict], family: str, channel: str, n: int) -> dict[float, dict]:
    return {
        r["ber"]: r
        for r in rows
        if r["study"] == "payload" and r["family"] == family and r["channel"] == channel and r["n"] == n
    }


SERIES = (
    ("LDPC IRA", "soft"),
    ("LDPC IRA", "hard"),
    ("RS GF(2^8)", "hard"),
    ("BCH", "hard"),
    ("RS + BCH bound", "hard"),
)


def report(rows: list[dict], frames: int, screen: int, elapsed: float, figure: str) -> str:
    lines = [
        "# Channel codes for the digital layer: bytes carried at the QIM channel's bit error rates",
        "",
        f"`python research/ecc_compare.py` ({elapsed / 60:.1f} min on one thread of an {cpu_name()}, a machine shared "
        f"with other jobs, so times are high and noisy; {frames} random frames per payload test, of which at most 1 % "
        "may fail). The payload is the largest message (bytes) whose "
        "frame error rate stays at or under 1 %: for LDPC found by bisection over random frames (each step screened "
        f"on {screen} frames, the same noise at each payload, then confirmed on {frames} fresh frames), "
        "for RS and BCH exact (binomial tails of a bounded-distance decoder) and confirmed by "
        "simulated frames. Soft: BPSK over AWGN at the same hard BER, LLR = 2y/sigma^2; hard: a binary symmetric "
        "channel. RS and BCH decode hard decisions, so their soft figure is their hard one. The RS + BCH row is an "
        "optimistic bound (every inner failure detected and erased, independent erasures). Capacity: the channel's, "
        "times n / 8.",
        "",
    ]
    for n in (8192, 4096, 2048):
        lines += [f"## n = {n} coded bits ({n // 8} bytes)", ""]
        header = "| code | channel | " + " | ".join(f"{b:g}" for b in PAYLOAD_BERS) + " |"
        lines += [header, "|---|---|" + "---|" * len(PAYLOAD_BERS)]
        for family, channel in SERIES:
            found = _payload(rows, family, channel, n)
            cells = [str(found[b]["k_bytes"]) if b in found else "-" for b in PAYLOAD_BERS]
            lines.append(f"| {family} | {channel} | " + " | ".join(cells) + " |")
        for channel in ("soft", "hard"):
            cells = [f"{capacity(b, channel == 'soft') * n / 8:.0f}" for b in PAYLOAD_BERS]
            lines.append(f"| capacity | {channel} | " + " | ".join(cells) + " |")
        decode = _payload(rows, "LDPC IRA", "soft", n)
        cells = [
            f"{decode[b]['decode_ms']:.1f} / {decode[b]['failing_ms']:.0f}" if b in decode else "-"
            for b in PAYLOAD_BERS
        ]
        lines.append("| LDPC soft decode ms (mean / failing frame) | | " + " | ".join(cells) + " |")
        for family in ("RS GF(2^8)", "BCH"):
            found = _payload(rows, family, "hard", n)
            cells = [
                f"{found[b]['decode_ms']:.2f}" if found.get(b, {}).get("decode_ms") is not None else "-"
                for b in PAYLOAD_BERS
            ]
            lines.append(f"| {family} decode ms | | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _choice(rows)
    lines += _simulated_fer_notes(rows)
    lines += _speed_section(rows)
    lines += _profile_section(rows)
    lines += _decoder_section(rows)
    lines += _osd_section(rows)
    lines += _polar_section(rows)
    lines += [f"![bytes carried per BER]({figure})", ""]
    lines += _module_table(rows)
    return "\n".join(lines)


def payload_table(rows: list[dict]) -> dict[tuple[int, bool], tuple[int, ...]]:
    """The LDPC payloads in bits per (n, soft), made non-increasing in the BER (a running minimum, so noise in one
    point never promises more at a worse channel): ``PAYLOAD_BITS`` of ``pipeline.model.digital.channel``."""
    table = {}
    for n in BUDGETS:
        for soft in (True, False):
            found = _payload(rows, "LDPC IRA", "soft" if soft else "hard", n)
            table[n, soft] = tuple(
                int(v) for v in np.minimum.accumulate([8 * found[b]["k_bytes"] for b in PAYLOAD_BERS])
            )
    return table


def _module_table(rows: list[dict]) -> list[str]:
    lines = [
        "## The layer's payload table",
        "",
        "`PAYLOAD_BITS` in `pipeline/model/digital/channel.py` (message bits per (n, soft), at the BERs above, "
        "non-increasing in the BER), which `payload_for` interpolates:",
        "",
        "```python",
        "PAYLOAD_BITS: dict[tuple[int, bool], tuple[int, ...]] = {",
    ]
    lines += [f"    ({n}, {soft}): {bits}," for (n, soft), bits in payload_table(rows).items()]
    return [*lines, "}", "```", ""]


def _choice(rows: list[dict]) -> list[str]:
    """The layer's choice in figures: soft LDPC against the best algebraic code, per BER at n = 8192."""
    ldpc = _payload(rows, "LDPC IRA", "soft", 8192)
    best = {
        b: max(_payload(rows, f, "hard", 8192).get(b, {}).get("k_bytes", 0) for f in ("RS GF(2^8)", "BCH"))
        for b in PAYLOAD_BERS
    }
    cells = [f"{b:g}: {ldpc[b]['k_bytes']} vs {best[b]}" for b in PAYLOAD_BERS]
    return [
        "The layer uses the soft-decision LDPC code (`pipeline/model/digital/channel.py`). Bytes at n = 8192, LDPC "
        "soft vs the better of RS and BCH: " + "; ".join(cells) + ".",
        "",
    ]


def _simulated_fer_notes(rows: list[dict]) -> list[str]:
    worst = [r for r in rows if r["study"] == "payload" and r.get("exact_fer") is not None and r.get("frames")]
    seen = sum(r["failures"] for r in worst)
    tested = sum(r["frames"] for r in worst)
    return [
        f"RS and BCH points confirmed by simulation: {seen} failed frames of {tested} "
        f"(their exact frame error rates are at most 1 %). Layouts (n = 8192): "
        + "; ".join(f"BER {r['ber']:g} {r['family']} {r['layout']}" for r in worst if r["n"] == 8192),
        "",
    ]


def _speed_section(rows: list[dict]) -> list[str]:
    speed = [r for r in rows if r["study"] == "speed"]
    lines = [
        "## The same code, each library (n = 8192, per frame)",
        "",
        "| code | library | BER | bytes | encode ms | decode ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in speed:
        lines.append(
            f"| {r['family']} | {r['library']} | {r['ber']:g} | {r['k_bytes']} | {r['encode_ms']:.2f} | "
            f"{r['decode_ms']:.2f} |"
        )
    return [*lines, ""]


def _profile_section(rows: list[dict]) -> list[str]:
    found = [r for r in rows if r["study"] == "profile"]
    if not found:
        return []
    families = list(dict.fromkeys(r["family"] for r in found))
    lines = [
        "## LDPC degree profiles (n = 4096, bytes at 1 % FER)",
        "",
        "Message-bit column weights of H1 (`d3+0.2xd8`: a fifth of weight 8, the rest 3); parity bits are the "
        "accumulator's weight 2. The layer's rule: d3+0.2xd8 at rates of 0.45 and above, below it d4 with enough "
        "d16 that H1's rows average three edges.",
        "",
        "| profile | " + " | ".join(f"{b:g} {'soft' if soft else 'hard'}" for b, soft in PROFILE_CASES) + " |",
        "|---|" + "---|" * len(PROFILE_CASES),
    ]
    for family in families:
        found_k = {(r["ber"], r["channel"]): r["k_bytes"] for r in found if r["family"] == family}
        cells = [str(found_k[b, "soft" if soft else "hard"]) for b, soft in PROFILE_CASES]
        lines.append(f"| {family.removeprefix('LDPC IRA ')} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _decoder_section(rows: list[dict]) -> list[str]:
    found = [r for r in rows if r["study"] == "decoder"]
    families = list(dict.fromkeys(r["family"] for r in found))
    bers = sorted({r["ber"] for r in found})
    lines = [
        "## BP variants (n = 4096, soft): bytes at 1 % FER / mean decode ms",
        "",
        "| decoder | " + " | ".join(f"{b:g}" for b in bers) + " |",
        "|---|" + "---|" * len(bers),
    ]
    for family in families:
        mine = {r["ber"]: r for r in found if r["family"] == family}
        cells = [f"{mine[b]['k_bytes']} / {mine[b]['decode_ms']:.1f}" for b in bers]
        lines.append(f"| {family.removeprefix('LDPC IRA, ')} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _osd_section(rows: list[dict]) -> list[str]:
    found = [r for r in rows if r["study"] == "osd"]
    lines = [
        "## BP + OSD against BP alone (soft)",
        "",
        "| n | BER | bytes | BP+OSD-CS4 failures | BP failures | BP+OSD decode ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in found:
        lines.append(
            f"| {r['n']} | {r['ber']:g} | {r['k_bytes']} | {r['failures']}/{r['frames']} | "
            f"{r['bp_failures']}/{r['bp_frames']} | {r['decode_ms']:.1f} |"
        )
    return [*lines, ""]


def _polar_section(rows: list[dict]) -> list[str]:
    found = [r for r in rows if r["study"] == "polar"]
    if not found:
        return []
    lines = [
        "## Polar codes, CRC-aided SCL (sionna, list 8, CRC-16; n = 2048, soft)",
        "",
        "Designed for each channel (Bhattacharyya construction), batches of frames on one thread; bytes exclude the "
        "CRC. The LDPC row is the payload above.",
        "",
        "| BER | bytes | failures | decode ms |",
        "|---|---|---|---|",
    ]
    for r in found:
        lines.append(f"| {r['ber']:g} | {r['k_bytes']} | {r['failures']}/{r['frames']} | {r['decode_ms']:.0f} |")
    return [*lines, ""]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    colours = {
        "LDPC IRA soft": "C0",
        "LDPC IRA hard": "C1",
        "RS GF(2^8) hard": "C2",
        "BCH hard": "C3",
        "RS + BCH bound hard": "C4",
    }
    for ax, n in zip(axes, (8192, 4096), strict=True):
        for family, channel in SERIES:
            found = _payload(rows, family, channel, n)
            bers = sorted(found)
            ax.plot(
                bers,
                [found[b]["k_bytes"] for b in bers],
                "o-",
                color=colours[f"{family} {channel}"],
                label=f"{family} ({channel})",
            )
        for channel, style in (("soft", ":"), ("hard", "--")):
            ax.plot(
                PAYLOAD_BERS,
                [capacity(b, channel == "soft") * n / 8 for b in PAYLOAD_BERS],
                style,
                color="grey",
                label=f"capacity ({channel})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("raw bit error rate")
        ax.set_ylabel("bytes at FER <= 1 %")
        ax.set_title(f"n = {n} coded bits")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
