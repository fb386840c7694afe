"""What the digital layer writes, without the pixels: each level's keyed patterns (dither, interleaver, steps) and
each image's codewords, from the secrets' coding (``prepare``) and the per-image message.

Torch-free (NumPy, and the channel and source coders), so that a job that runs no network (``layers=digital``, or a
model whose analog share is 0) writes and checks the layer without importing torch: ``cpu_path.py`` does the pixels
in NumPy, ``layer.py`` in torch for training, evaluation and reading.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.model.digital import payload as pl
from pipeline.model.digital.channel import make_code
from pipeline.model.digital.config import DigitalConfig
from pipeline.model.digital.keys import PUBLIC, Key
from pipeline.model.digital.source import EncodedSecret, decode_secret, encode_secrets

BLOCK = 8
# JPEG's quality-50 luminance quantisation table (ITU-T T.81, Annex K.1), row u (vertical frequency), column v.
JPEG_LUMA_Q50 = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601, as JPEG and WebP compute luma
# Reading variance floor in steps^2: 8-bit rounding alone leaves (1/sqrt(12))^2 grey levels^2 per coefficient.
MIN_SIGMA = 0.02
# A level is decoded only where its readings carry at least this fraction of its code rate in information: below it
# no decoder succeeds (the LDPC study's codes reach 86-99% of capacity), so an unmarked image, or a level a codec
# destroyed, costs a moment instead of a failing decode.
DECODE_GATE = 0.75
# Written slots per payload bit from which a level's code decodes when those slots read without error and the others
# carry nothing (the cover's flat blocks, left unwritten, are erasures to the reader): the least ratio, by code (n, k),
# at which belief propagation decoded 12 random erasure patterns of 12 (``research/erasure_need.py``). Under it a
# stego whose written readings are all right may still not decode: on 288 held-out 256 px crops, 12 smooth ones
# had the top level's readings exact and the reader could not decode it (written slots 0.70-1.05 per bit).
ERASURE_NEED = {(4096, 768): 1.65, (4096, 1024): 1.35, (7168, 2400): 1.15, (24576, 9600): 1.15}
# The margin around ``ERASURE_NEED``: above it exact readings are taken as a decode, under it no decode is tried (it
# would fail, slowly: 130 ms a top-level frame). The study's codes went from 12 failures in 12 to none within 0.05 of
# a ratio, and on the 288 crops the reader, whose prior on the written blocks is soft, decoded every top level from
# 1.15 up and none under 1.06.
SURE_MARGIN = 1.1
# Where a reveal came from when no digital level decoded (the analog path).
ANALOG = "analog"


@dataclass(frozen=True)
class PreparedSecrets:
    """The secrets of a job, coded once for every level: ``streams[level][secret]``, and the message room."""

    streams: tuple[tuple[EncodedSecret, ...], ...]
    message_room: int | None  # bytes reserved for the per-image message in the level that carries it (None: none)

    @property
    def num_secrets(self) -> int:
        return len(self.streams[0])

    def decoded(self, level: int, size: int) -> list[np.ndarray]:
        """The K secrets a reader gets from ``level`` (size, size, 3) uint8: its streams decoded (once)."""
        return _decoded(self, level, size)


def level_secrets(
    levels: list[str | None], prepared: list[PreparedSecrets], config: DigitalConfig
) -> list[tuple[str | None, list[np.ndarray] | None]]:
    """Each image's verdict as the embed job's verify reports it: (the level that decodes, or None; that level's K
    secrets (size, size, 3) uint8, its streams decoded). A level that decodes gives its streams' bytes exactly, so
    its secrets are the prepared streams decoded."""
    names = [lv.name for lv in config.levels]
    return [
        (level, None if level is None else p.decoded(names.index(level), config.size))
        for level, p in zip(levels, prepared, strict=True)
    ]


@functools.lru_cache(maxsize=16)
def _decoded(prepared: PreparedSecrets, level: int, size: int) -> list[np.ndarray]:
    return [decode_secret(s.codec, s.data, size) for s in prepared.streams[level]]


def information(llr: np.ndarray) -> float:
    """Bits per slot that soft readings ``llr`` carry, estimated from their magnitudes (the mean of
    1 - log2(1 + exp(-|LLR|)): exact for calibrated LLRs)."""
    return float(np.mean(1.0 - np.logaddexp(0.0, -np.abs(llr)) / np.log(2.0)))


@functools.cache
def coefficient_positions(coeffs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Positions (u*8 + v) of ``coeffs`` in a block's 64 DCT coefficients (one array per ``coeffs``, shared: read
    it, never write it)."""
    return np.array([u * BLOCK + v for u, v in coeffs], dtype=np.int64)


@dataclass(eq=False)
class LayerCode:
    """A keyed layer's patterns and codewords (``DigitalLayer`` adds the pixels in torch, ``CpuPath`` in NumPy)."""

    config: DigitalConfig = field(default_factory=DigitalConfig)
    key: Key = PUBLIC

    @functools.cached_property
    def grid_blocks(self) -> int:
        return self.config.size // BLOCK

    @functools.lru_cache(maxsize=8)  # noqa: B019 (one layer per job; the cache dies with it)
    def step_values(self, i: int) -> np.ndarray:
        """(S,) float32: level ``i``'s quantiser steps in grey levels (its multiple of JPEG's quality-50 table,
        floored; shared, as ``dither_values``)."""
        lv = self.config.levels[i]
        steps = np.array([lv.step * JPEG_LUMA_Q50[u][v] for u, v in lv.coeffs], dtype=np.float32)
        return np.maximum(steps, np.float32(lv.floor))

    @functools.lru_cache(maxsize=8)  # noqa: B019 (one layer per job; the cache dies with it)
    def dither_values(self, i: int) -> np.ndarray:
        """(h, w, S) float32 in [0, 1): level ``i``'s keyed dither on the grid."""
        g = self.grid_blocks
        d = self.key.rng(f"dither/{i}").random((g, g, len(self.config.levels[i].coeffs)))
        return d.astype(np.float32)

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def interleaver(self, i: int) -> np.ndarray:
        """Level ``i``'s keyed permutation: codeword bit j goes to slot perm[j] (slots: block-major, coefficient)."""
        return self.key.rng(f"interleave/{i}").permutation(self.slots(i))

    def slots(self, i: int) -> int:
        return self.grid_blocks**2 * len(self.config.levels[i].coeffs)

    def code_shape(self, i: int) -> tuple[int, int]:
        """Level ``i``'s code as (n, k): its slots, and its payload in bits."""
        return self.slots(i), 8 * self.config.levels[i].payload

    def code(self, i: int):
        return make_code(*self.code_shape(i))

    # ----------------------------------------------------------------------------------------------- source coding
    def prepare(self, secrets: list[np.ndarray], message_room: int | None = None) -> PreparedSecrets:
        """Code each secret (H, W, 3) uint8 once for every level (the job's start). ``message_room``: the longest
        per-image message the job writes (None: no message field)."""
        if message_room is not None and not 0 <= message_room <= self.config.max_message:
            raise ValueError(f"a message is at most {self.config.max_message} bytes, not {message_room}")
        k = len(secrets)
        budgets = [pl.stream_budget(lv.payload, k, message_room if lv.message else None) for lv in self.config.levels]
        per_secret = [encode_secrets(s, budgets, self.config.size) for s in secrets]  # [secret][level]
        return PreparedSecrets(tuple(zip(*per_secret, strict=True)), message_room)

    def level_bytes(self, prepared: PreparedSecrets, i: int, message: bytes | None) -> bytes:
        lv = self.config.levels[i]
        msg = None
        if lv.message and prepared.message_room is not None:
            msg = message or b""
            if len(msg) > prepared.message_room:
                raise ValueError(f"message of {len(msg)} bytes longer than the job's {prepared.message_room}")
        streams = tuple((s.codec_id, s.data) for s in prepared.streams[i])
        return pl.pack(pl.LevelPayload(i, streams, msg), lv.payload)

    def slot_bits(self, prepared: PreparedSecrets, i: int, messages: list[bytes | None]) -> np.ndarray:
        """(B, slots) uint8: each image's codeword of level ``i``, interleaved onto the slots."""
        if self.shares_codeword(prepared, i):
            return np.tile(self.shared_slot_bits(prepared, i), (len(messages), 1))
        code = self.code(i)
        words = np.stack([self._codeword(code, self.level_bytes(prepared, i, m)) for m in messages])
        out = np.empty_like(words)
        out[:, self.interleaver(i)] = words
        return out

    def shares_codeword(self, prepared: PreparedSecrets, i: int) -> bool:
        """Level ``i`` carries the same codeword in every image of ``prepared``: no per-image message rides in it."""
        return not self.config.levels[i].message or prepared.message_room is None

    @functools.lru_cache(maxsize=32)  # noqa: B019 (a job's few secret sets; the cache dies with the layer)
    def shared_slot_bits(self, prepared: PreparedSecrets, i: int) -> np.ndarray:
        """(slots,) uint8: the codeword of level ``i`` that every image of ``prepared`` carries
        (``shares_codeword``), interleaved onto the slots; computed once (shared: read it, never write it)."""
        word = self._codeword(self.code(i), self.level_bytes(prepared, i, None))
        out = np.empty_like(word)
        out[self.interleaver(i)] = word
        return out

    @staticmethod
    def _codeword(code, data: bytes) -> np.ndarray:
        return code.encode(np.unpackbits(np.frombuffer(data, dtype=np.uint8)))

    def worth_decoding(self, i: int, slot_llr: np.ndarray) -> bool:
        """Level ``i``'s soft readings carry enough information for its code to have a chance (``DECODE_GATE``)."""
        return information(slot_llr) >= DECODE_GATE * 8 * self.config.levels[i].payload / slot_llr.size

    def written_slots(self, i: int, written_blocks: np.ndarray) -> np.ndarray:
        """(B,) counts of blocks written -> level ``i``'s written slots per payload bit (B,) float."""
        k = self.code_shape(i)[1]
        return np.asarray(written_blocks, dtype=np.float64) * len(self.config.levels[i].coeffs) / k

    def sure_when_exact(self, i: int, written_blocks: np.ndarray) -> np.ndarray:
        """(B,) bool: level ``i`` decodes for certain where its ``written_blocks`` (B,) counts read without error
        (``ERASURE_NEED`` with ``SURE_MARGIN``; never for a code the study did not measure)."""
        need = ERASURE_NEED.get(self.code_shape(i))
        if need is None:
            return np.zeros(np.shape(written_blocks), bool)
        return self.written_slots(i, written_blocks) >= SURE_MARGIN * need

    def may_decode(self, i: int, written_blocks: np.ndarray) -> np.ndarray:
        """(B,) bool: level ``i`` may decode from ``written_blocks`` (B,) counts: at least ``ERASURE_NEED`` over
        ``SURE_MARGIN`` written slots per payload bit (the study's codes decoded no pattern there even with every
        reading exact), or one per bit for a code it did not measure (fewer cannot carry the payload at all)."""
        need = ERASURE_NEED.get(self.code_shape(i))
        floor = 1.0 if need is None else max(1.0, need / SURE_MARGIN)
        return self.written_slots(i, written_blocks) >= floor

    def decodes_to(self, i: int, slot_llr: np.ndarray, want: np.ndarray) -> list[bool]:
        """Whether each image's level-``i`` soft readings ``slot_llr`` (B, slots) decode to its slot bits ``want``
        (B, slots), gated as the reader gates; the frames go to the decoder together (``ChannelCode.decode_frames``:
        the decoding worker where one runs)."""
        perm, code = self.interleaver(i), self.code(i)
        tried = [j for j in range(len(slot_llr)) if self.worth_decoding(i, slot_llr[j])]
        out = [False] * len(slot_llr)
        if tried:
            bits, _ = code.decode_frames(slot_llr[tried][:, perm])
            sent = want[tried][:, perm][:, : code.k]
            for j, got, expected in zip(tried, bits, sent, strict=True):
                out[j] = bool(np.array_equal(np.asarray(got, dtype=np.uint8), expected))
        return out


class PreparedCache:
    """The secrets' coding (``LayerCode.prepare``) by content, the last ``size`` sets kept: a job codes its shared
    secrets once (per-sample secrets, or an API that alternates a few, bring more)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._kept: OrderedDict[bytes, PreparedSecrets] = OrderedDict()

    def get(self, code: LayerCode, secrets: Sequence[np.ndarray], message_room: int | None) -> PreparedSecrets:
        """One image's K secrets ((N, N, 3) uint8 each), coded for every level of ``code``."""
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(s).tobytes() for s in secrets))
        digest.update(f"{code.key.key_id}/{message_room}".encode())
        tag = digest.digest()
        if tag in self._kept:
            self._kept.move_to_end(tag)
            return self._kept[tag]
        prepared = code.prepare(list(secrets), message_room)
        self._kept[tag] = prepared
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return prepared
