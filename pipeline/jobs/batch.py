"""The per-batch work of the embed and extract jobs, as pure functions over a list of samples.

No global state: everything a function needs (engine, decoder, settings, shared secrets) is passed in, so the local
runner (threads) and a distributed runner (a Ray actor holding one engine) call exactly the same code. A batch is a
list of ``Sample``s; samples that already carry an error (bad member, refused image) ride along untouched so that
rows stay in shard order.

Embed, per batch (N = network size, images uint8 HWC at the boundaries, float32 NCHW in [0, 1] inside):

    decode      bytes -> cover_full (H, W, 3) uint8 (+ alpha aside); per-sample secrets -> (K, N, N, 3) uint8
    preprocess  cover_N = D(cover_full)                                  area average to N x N, 8-bit
    embed       stego_N = engine.embed(cover_N, secrets_N)                (B, 3, N, N), (B, 3K, N, N) -> (B, 3, N, N)
                [+ the digital layer: the analog change scaled, every level written, each image's message]
    compose     stego_full = round(cover_full + U(stego_N - cover_N)), clipped to uint8; U = D's pseudo-inverse
                by default, so that D(stego_full) is stego_N up to rounding (resample.py)
    verify      revealed = engine.reveal(D(stego_full)) vs secrets_N -> psnr/ssim_secret for EVERY image;
                psnr_cover at full resolution, ssim_cover at N (``verify_batch``: its own stage, so that a runner
                overlaps it with the next batch's embed); with the digital layer the most detailed level that a
                receiver decodes gives the secret (``layer``), the analog reveal only where none does
    encode      stego_full (+ alpha put back) -> PNG / WebP / JPEG bytes

Extract, per batch: decode -> D (to N) -> engine.reveal -> K secrets (N, N, 3) uint8 -> metrics vs references ->
encode ``KEY.secret.png`` (K = 1) or ``KEY.secret1.png`` ... ``KEY.secretK.png``. With the digital layer, it reads
first (finding a moved grid), the analog reveal runs on the image moved back onto that grid, and each image takes
the digital secret where a level decoded.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.metrics_u8 import psnr_from_mse, squared_error_u8, ssim_u8
from pipeline.io.decode import DEFAULT_MAX_PIXELS, CpuDecoder, DecodedImage, ImageDecodeError, probe
from pipeline.io.encode import DEFAULT_JPEG_QUALITY, DEFAULT_PNG_LEVEL, EXTENSIONS, LOSSLESS, get_encoder
from pipeline.jobs.resample import (
    UPSAMPLE,
    compose,
    quantize,
    resize_bilinear,
    squared_error,
    to_network_size,
    to_network_size_float,
)
from pipeline.model.digital.codewords import ANALOG

if TYPE_CHECKING:
    from pipeline.runtime import Engine

# Which paths a job runs: "all" (the analog network and, where the model has it, the digital layer) or "digital" (the
# digital layer alone: no network runs, for users who need robustness and nothing else).
LAYERS = ("all", "digital")


@dataclass(frozen=True)
class JobSettings:
    """What shapes the outputs (and so the job's configuration fingerprint), plus the decode limit."""

    size: int = 256
    fmt: str = "png"
    png_level: int = DEFAULT_PNG_LEVEL
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    max_pixels: int = DEFAULT_MAX_PIXELS
    upsample: str = "exact"
    layers: str = "all"  # "digital": the digital layer alone, no network (models with the layer)

    def __post_init__(self) -> None:
        if self.upsample not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE)}, got {self.upsample!r}")
        if self.layers not in LAYERS:
            raise ValueError(f"layers must be one of {', '.join(LAYERS)}, got {self.layers!r}")

    @property
    def lossless(self) -> bool:
        """The output format keeps the stego's pixels (PNG and WebP here are lossless; JPEG is not)."""
        return self.fmt in LOSSLESS

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.fmt]

    def encoder(self, text: dict[str, str] | None = None) -> Callable[[np.ndarray, np.ndarray | None], bytes]:
        """The output encoder; ``text``: metadata the PNG outputs carry (tEXt chunks)."""
        return get_encoder(self.fmt, self.png_level, self.jpeg_quality, text=text)


@dataclass
class Sample:
    """One image to process and its result row, carried through the stages.

    Attributes:
        data: encoded cover (embed) or stego (extract) bytes; dropped after decoding to free memory.
        secret_data: encoded per-sample secrets (``--secret-ext``), K entries, or None to use the shared secrets.
        row: the results row (pipeline.io.results columns), filled in as the stages go.
        pixels: from the header probe; used to bound the pixels in flight per batch.
        image: the decoded cover/stego; secrets_n: (K, N, N, 3) uint8 secrets (per sample, or the shared ones once
            embedded); cover_n: (N, N, 3) uint8, the cover at N as a receiver's resize gives it, and cover_f
            (N, N, 3) float32 in grey levels, the same before rounding: the network's input; both kept from embed to
            verify.
        result: the full-resolution stego (embed) or (K, N, N, 3) revealed secrets (extract).
        outputs: (member name, bytes) to write into the output shard.
        message: the per-image message the digital layer carries (embed with ``--message``).
        pending: the batch's verification still running (``verify_batch``), finished before the sample is encoded.
        intact: the stego was stored at the grid size and read there with its top level intact
            (``CpuDigitalStage.settle``): verify does not read it again.
        blocks: (N/8, N/8) bool, the blocks of ``cover_f`` that the digital layer writes (``CpuPath.active_blocks``),
            found once for the write, ``settle`` and the check.
        flipped: (N/8, N/8) bool, the written blocks whose readings storage flipped, where the write that stored
            the stego found them (``CpuPath.store``): ``settle`` rewrites them.
    """

    key: str
    row: dict[str, Any]
    data: bytes | None = None
    secret_data: list[bytes] | None = None
    pixels: int = 0
    image: DecodedImage | None = None
    secrets_n: np.ndarray | None = None
    cover_n: np.ndarray | None = None
    cover_f: np.ndarray | None = None
    result: np.ndarray | None = None
    outputs: list[tuple[str, bytes]] = field(default_factory=list)
    message: bytes | None = None
    pending: PendingVerify | None = None
    intact: bool = False
    blocks: np.ndarray | None = None
    flipped: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """Still to be processed (no error so far, and a role that is processed)."""
        return self.row["status"] is None

    def fail(self, message: str) -> None:
        self.row["status"] = "error"
        self.row["error"] = message
        self.data = self.secret_data = None
        self.image = self.secrets_n = self.cover_n = self.cover_f = self.result = self.blocks = None


# ---------------------------------------------------------------------------------------------------------------------
# Image plumbing


def set_secret_metrics(row: dict, psnrs: np.ndarray, ssims: np.ndarray) -> None:
    """One image's secret figures: ``psnr_secret`` / ``ssim_secret`` the mean over its K secrets, and each secret's
    PSNR in its own column, ``psnr_secret1`` ... ``psnr_secretK``."""
    row["psnr_secret"] = float(np.mean(psnrs))
    row["ssim_secret"] = float(np.mean(ssims))
    for j, v in enumerate(psnrs, start=1):
        row[f"psnr_secret{j}"] = float(v)


def to_nchw(batch: Sequence[np.ndarray]) -> np.ndarray:
    """K images (N, N, 3) uint8 -> (1, 3K, N, N)-ready float32 stack: returns (len, 3, N, N) in [0, 1]."""
    return np.stack(batch).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def per_image_metrics(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM (as ``pipeline.core.metrics``) of uint8 image pairs (B, N, N, 3): two (B,) float64 arrays.

    The squared error exact in integers (``squared_error_u8``), SSIM as ``ssim_u8``: on every image of a job they
    were the verify stage's largest cost in torch. SSIM agrees with the float64 reference of the evaluation report
    to about 1e-5.
    """
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    sse = np.array([squared_error_u8(x, y) for x, y in zip(a, b, strict=True)], dtype=np.float64)
    return psnr_from_mse(sse / a[0].size), ssim_u8(a, b)


def secret_id(blobs: Sequence[bytes]) -> str:
    return "+".join(hashlib.sha256(b).hexdigest()[:16] for b in blobs)


def prepare_secrets(blobs: Sequence[bytes], size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded secret images -> (K, N, N, 3) uint8 at the network size. Raises ImageDecodeError for a bad one."""
    from pipeline.io.decode import decode_image

    return np.stack([resize_bilinear(decode_image(b, max_pixels).rgb, size) for b in blobs])


# ---------------------------------------------------------------------------------------------------------------------
# Stages shared by embed and extract


def probe_samples(samples: Sequence[Sample], max_pixels: int) -> None:
    """Header check of every active sample: size recorded, over-limit and unreadable images refused undecoded."""
    for s in samples:
        if not s.active or s.data is None:
            continue
        try:
            h = probe(s.data, max_pixels)
        except ImageDecodeError as exc:
            s.fail(str(exc))
            continue
        s.pixels = h.pixels
        s.row["width"], s.row["height"] = h.width, h.height


def decode_samples(samples: Sequence[Sample], decoder: CpuDecoder, size: int) -> float:
    """Decode covers (and per-sample secrets, resized to N) of the active samples; returns seconds spent."""
    t0 = time.perf_counter()
    active = [s for s in samples if s.active and s.data is not None]
    for s in active:  # hashing releases the GIL but is cheap next to decoding; do it before the bytes are dropped
        s.row["src_sha256"] = hashlib.sha256(s.data).hexdigest()
    decoded = decoder.decode_many([s.data for s in active])
    with_secrets = []
    for s, img in zip(active, decoded, strict=True):
        s.data = None  # the encoded bytes are no longer needed: free them while the batch is in flight
        if isinstance(img, Exception):
            s.fail(str(img))
            continue
        s.image = img
        s.row["width"], s.row["height"] = img.rgb.shape[1], img.rgb.shape[0]
        s.row["src_mode"] = img.mode
        if s.secret_data is not None:
            with_secrets.append(s)
    if with_secrets:
        flat = [b for s in with_secrets for b in s.secret_data]
        dec = decoder.decode_many(flat)
        k = len(with_secrets[0].secret_data)
        for i, s in enumerate(with_secrets):
            parts = dec[i * k : (i + 1) * k]
            bad = next((p for p in parts if isinstance(p, Exception)), None)
            if bad is not None:
                s.fail(f"secret image: {bad}")
                continue
            s.secrets_n = np.stack([resize_bilinear(p.rgb, size) for p in parts])
            s.secret_data = None
    dt = time.perf_counter() - t0
    for s in active:
        s.row["decode_ms"] = 1000 * dt / max(1, len(active))
    return dt


def encode_sample(
    sample: Sample, encoder: Callable[[np.ndarray, np.ndarray | None], bytes], ext: str, mode: str
) -> None:
    """Encode a processed sample's outputs: the stego (``mode="embed"``) or its K secrets (``mode="extract"``).

    A batch's verification may still be running (``sample.pending``): it needs none of what is freed here, and it
    fills in the row's figures when it is finished (``finish_pending``), which the runner does before it writes the
    shard's rows."""
    if not sample.active or sample.result is None:
        return
    t0 = time.perf_counter()
    if mode == "embed":
        alpha = sample.image.alpha if sample.image is not None else None
        sample.outputs = [(f"{sample.key}.{ext}", encoder(sample.result, alpha))]
    else:
        k = sample.result.shape[0]
        names = ["secret"] if k == 1 else [f"secret{i + 1}" for i in range(k)]
        sample.outputs = [
            (f"{sample.key}.{n}.{ext}", encoder(img, None)) for n, img in zip(names, sample.result, strict=True)
        ]
    sample.row["out_key"] = ",".join(name for name, _ in sample.outputs)
    sample.row["status"] = "ok"
    sample.row["encode_ms"] = 1000 * (time.perf_counter() - t0)
    sample.image = sample.result = sample.secrets_n = sample.cover_n = sample.cover_f = sample.blocks = None  # free


# ---------------------------------------------------------------------------------------------------------------------
# Embed


def embed_batch(
    engine: Engine,
    samples: Sequence[Sample],
    size: int,
    shared_secrets: np.ndarray | None,
    upsample: str = "exact",
    message_room: int | None = None,
    layers: str = "all",
) -> dict[str, float]:
    """Preprocess, embed and compose the active decoded samples of a batch, in place (``verify_batch`` follows).

    Args:
        shared_secrets: (K, N, N, 3) uint8 hidden in every cover, or None when each sample has ``secrets_n``.
        upsample: how the residual is carried to full size (``pipeline.jobs.resample``).
        message_room: with the digital layer, the bytes reserved for each image's message (None: no message).
        layers: "digital": the digital layer alone is written on the cover (no network runs).
    Sets ``sample.result`` (stego_full, (H, W, 3) uint8), ``psnr_cover``, and keeps ``cover_n`` and ``secrets_n``
    for verify. Returns seconds per stage: preprocess, embed, compose (the digital layer alone in NumPy stores each
    stego at N as it is written: there ``embed`` includes the storing, and ``compose`` is ``settle`` and the figures).
    """
    active = [s for s in samples if s.active and s.image is not None]
    times = dict.fromkeys(("preprocess", "embed", "compose"), 0.0)
    if not active:
        return times
    t0 = time.perf_counter()
    # The batch's covers in one array, each sample's cover_f a view of it: converted in place, not stacked again.
    covers = np.empty((len(active), size, size, 3), np.float32)
    for s, cover in zip(active, covers, strict=True):
        at_n = s.image.rgb.shape[:2] == (size, size)  # then cover_f holds the image's own levels
        cover[...] = s.image.rgb if at_n else to_network_size_float(s.image.rgb, size)
        s.cover_f = cover  # (N, N, 3) float32
        s.cover_n = s.image.rgb if at_n else np.clip(np.rint(s.cover_f), 0, 255).astype(np.uint8)
        s.secrets_n = shared_secrets if s.secrets_n is None else s.secrets_n  # (K, N, N, 3) uint8
    b = len(active)
    messages = [s.message for s in active] if message_room is not None else None
    if no_network(engine, layers) and size == engine.digital_config.size:  # the digital layer alone, in NumPy
        t1 = time.perf_counter()
        blocks = engine.cpu_digital.path.active_blocks(covers)
        for s, on in zip(active, blocks, strict=True):
            s.blocks = on
        sse = _write_digital_alone(engine, active, covers, blocks, messages, message_room, upsample, size)
        t2 = time.perf_counter()
    else:
        secrets_n = np.stack([s.secrets_n for s in active])  # (B, K, N, N, 3)
        k = secrets_n.shape[1]
        secrets_in = secrets_n.transpose(0, 1, 4, 2, 3).reshape(b, k * 3, size, size).astype(np.float32) / 255.0
        cover_in = to_nchw([s.cover_f for s in active])
        t1 = time.perf_counter()
        # (B, 3, N, N) float32 in [0, 1]; with no network, the digital layer resized to its own grid by torch
        stego_n = cover_in if no_network(engine, layers) else engine.embed(cover_in, secrets_in)
        if engine.digital:
            stego_n = engine.stages.write_digital(cover_in, stego_n, secrets_in, messages, message_room)
        t2 = time.perf_counter()
        sse = {}
        for i, (s, sn) in enumerate(zip(active, stego_n, strict=True)):
            s.result, sse[i] = compose(s.image.rgb, s.cover_f, sn, upsample, keep_luma=engine.digital)
    for i in _settle(engine, active, size, messages, message_room):
        sse.pop(i, None)  # a settled stego's figure comes from its stored pixels
    for i, s in enumerate(active):
        err = sse[i] if i in sse else squared_error(s.result, s.image.rgb)
        s.row["psnr_cover"] = float(psnr_from_mse(err / s.result.size))
    t3 = time.perf_counter()
    for s in active:
        s.row["infer_ms"] = 1000 * (t3 - t0) / b
    times.update(preprocess=t1 - t0, embed=t2 - t1, compose=t3 - t2)
    return times


def _write_digital_alone(
    engine: Engine,
    active: Sequence[Sample],
    covers: np.ndarray,
    blocks: np.ndarray,
    messages: list[bytes | None] | None,
    message_room: int | None,
    upsample: str,
    size: int,
) -> dict[int, float]:
    """The digital layer alone written on ``covers`` (B, N, N, 3) float32 (``blocks``: their written
    blocks): each sample's ``result`` set. An image at the grid size is stored there as the layer writes it
    (``CpuDigitalStage.store``, which finds its ``flipped`` blocks); a larger one's stego is composed at full size.
    Returns the composed samples' squared errors (by index into ``active``)."""
    digital, sse = engine.cpu_digital, {}
    at_n = [i for i, s in enumerate(active) if s.image.rgb.shape[:2] == (size, size)]
    others = sorted(set(range(len(active))) - set(at_n))
    for idx, store in ((at_n, True), (others, False)):
        if not idx:
            continue
        every = len(idx) == len(active)  # the batch as it is: no copies
        part, on = (covers, blocks) if every else (covers[idx], blocks[idx])
        secrets = [active[i].secrets_n for i in idx]
        msg = None if messages is None else [messages[i] for i in idx]
        if store:
            for i, (x, flipped) in zip(idx, digital.store(part, secrets, msg, message_room, on), strict=True):
                active[i].result, active[i].flipped = x, flipped
            continue
        for i, x in zip(idx, digital.write(part, secrets, msg, message_room, on), strict=True):
            s = active[i]
            s.result, sse[i] = compose(s.image.rgb, s.cover_f, x.transpose(2, 0, 1) / 255.0, upsample, True)
    return sse


def _settle(
    engine: Engine,
    active: Sequence[Sample],
    size: int,
    messages: list[bytes | None] | None,
    message_room: int | None,
) -> list[int]:
    """Rewrite the blocks of the stegos stored at the digital layer's grid size where the clip or rounding flipped
    a reading (``CpuDigitalStage.settle``): each such sample's ``result`` becomes its settled stego and ``intact``
    its reading, so that the job's stegos read every codeword as written and their check decodes nothing. Returns
    the indices (into ``active``) of the samples settled."""
    if not engine.digital or size != engine.digital_config.size:
        return []
    at_n = [i for i, s in enumerate(active) if s.result.shape[:2] == (size, size)]
    if not at_n:
        return []
    samples = [active[i] for i in at_n]
    stored = np.stack([s.result for s in samples])
    picked = None if messages is None else [messages[i] for i in at_n]
    blocks = _blocks_of(samples)
    covers = np.stack([s.cover_f for s in samples]) if blocks is None else None  # for the blocks alone
    flipped = None if any(s.flipped is None for s in samples) else np.stack([s.flipped for s in samples])
    secrets = [s.secrets_n for s in samples]
    intact = engine.cpu_digital.settle(stored, covers, secrets, picked, message_room, blocks, flipped)
    for s, x, ok in zip(samples, stored, intact, strict=True):
        s.result, s.intact, s.flipped = x, bool(ok), None
    return at_n


def _blocks_of(samples: Sequence[Sample]) -> np.ndarray | None:
    """The samples' written blocks (B, N/8, N/8) where each has them, else None (found again from the covers)."""
    if any(s.blocks is None for s in samples):
        return None
    return np.stack([s.blocks for s in samples])


def no_network(engine: Engine, layers: str) -> bool:
    """The job writes the digital layer alone: ``--layers digital``, or a model whose analog share is 0 (the
    network's change scaled away). No network runs then."""
    return engine.digital and engine.digital_config.writes_alone(layers)


def verify_batch(
    engine: Engine,
    samples: Sequence[Sample],
    size: int,
    message_room: int | None = None,
    lossless: bool = True,
    layers: str = "all",
) -> dict[str, float]:
    """Reveal every embedded sample of a batch as a receiver will (its stego resized back to N) and score it.

    Sets ``psnr_secret`` / ``ssim_secret`` (mean over the K secrets) and ``ssim_cover`` (at N), adds the time to
    ``infer_ms``, and drops ``cover_n`` / ``secrets_n``. With the digital layer the secret is the most detailed level
    a receiver decodes (``layer``; ``lossless``: the output format keeps the pixels, see
    ``AnalyticStages.verify_digital``) and the analog reveal's where none does. A stage of its own so that a runner
    can overlap it with the next batch's embed. Returns seconds: {"verify": ...}.

    A lossless output's digital check runs in a thread of its own (``CpuDigitalStage.verify``, which decodes the
    frames storage left errors in, in that thread or in a decoding worker where one runs): the batch's samples then
    carry it as ``pending``
    (``finish_pending`` fills in their rows), so that neither the next batch's verify nor this batch's encoding
    waits for it: a smooth cover's decode takes 30-200 ms.
    """
    active = [s for s in samples if s.active and s.result is not None and s.cover_n is not None]
    if not active:
        return {"verify": 0.0}
    t0 = time.perf_counter()
    covers_n = np.stack([s.cover_n for s in active])
    messages = [s.message for s in active] if message_room is not None else None
    if engine.digital and lossless and not all(s.intact for s in active):
        engine.cpu_digital.start_decoder()  # the decoding worker where one runs (at once if started)
    if engine.digital and lossless and size == engine.digital_config.size:  # read where it was written: NumPy
        secrets = [s.secrets_n for s in active]
        intact = np.array([s.intact for s in active])
        # The check reads only the stegos settle did not read intact: the others' rows of ``grid`` stay unwritten.
        grid, back_n = _on_grid_where([s.result for s in active], size, ~intact)
        blocks = _blocks_of(active)
        covers_f = np.stack([s.cover_f for s in active]) if blocks is None else None
        check = _checks().submit(
            engine.cpu_digital.verify, grid, covers_f, secrets, messages, message_room, intact, blocks
        )
        ssim_cover = per_image_metrics(back_n, covers_n)[1]  # meanwhile
        found = check.result
        pending = PendingVerify(lambda: _score(engine, active, back_n, found(), ssim_cover, size, layers, secrets))
        for s in active:
            s.pending = pending
        return {"verify": _add_infer_ms(active, time.perf_counter() - t0)}
    grid, back_n = on_grid([s.result for s in active], size)  # what a receiver reads, as extract reads it
    found = None
    if engine.digital:
        b, k = len(active), active[0].secrets_n.shape[0]
        secrets_in = np.stack([s.secrets_n for s in active]).transpose(0, 1, 4, 2, 3).reshape(b, k * 3, size, size)
        covers = to_nchw([s.cover_f for s in active])
        found = engine.stages.verify_digital(
            to_nchw(grid), covers, secrets_in.astype(np.float32) / 255, messages, message_room, lossless
        )
    _score(engine, active, back_n, found, per_image_metrics(back_n, covers_n)[1], size, layers)
    return {"verify": _add_infer_ms(active, time.perf_counter() - t0)}


def _add_infer_ms(samples: Sequence[Sample], seconds: float) -> float:
    """Add a batch's ``seconds`` to its samples' ``infer_ms``, shared out among them; returns ``seconds``."""
    for s in samples:
        s.row["infer_ms"] = (s.row.get("infer_ms") or 0.0) + 1000 * seconds / max(1, len(samples))
    return seconds


class PendingVerify:
    """A batch's verification still to finish (its digital check runs in another thread): ``finish`` once, from
    whichever of the batch's samples asks first (thread-safe), adding the time it took to each one's ``infer_ms``."""

    def __init__(self, work: Callable[[], Sequence[Sample]]) -> None:
        self._work, self._lock, self._done = work, threading.Lock(), False

    def finish(self) -> float:
        """Finish the batch (once); the seconds this call spent on it (0 when it was done already)."""
        with self._lock:
            if self._done:
                return 0.0
            t0 = time.perf_counter()
            samples = self._work()
            self._done = True
            for s in samples:
                s.pending = None
            return _add_infer_ms(samples, time.perf_counter() - t0)


def finish_pending(samples: Sequence[Sample]) -> float:
    """Finish the verifications ``samples`` still wait on (``verify_batch``): the seconds that took, which belong to
    the verify stage."""
    spent, seen = 0.0, set()
    for s in samples:
        if s.pending is not None and id(s.pending) not in seen:
            seen.add(id(s.pending))
            spent += s.pending.finish()
    return spent


def _score(
    engine: Engine,
    active: Sequence[Sample],
    back_n: np.ndarray,
    found: list[tuple[str | None, list[np.ndarray] | None]] | None,
    ssim_cover: np.ndarray,
    size: int,
    layers: str,
    secrets: Sequence[np.ndarray] | None = None,
) -> Sequence[Sample]:
    """The figures of ``verify_batch``: ``found`` (the digital layer's verdict per image, None without the layer)
    decides which images take a level's secret; the analog reveal gives the others'. ``secrets``: each sample's
    (K, N, N, 3) secrets where the samples may no longer hold them (encoded meanwhile). Returns ``active``."""
    secrets_n = np.stack([s.secrets_n for s in active] if secrets is None else secrets)  # (B, K, N, N, 3)
    b, k = secrets_n.shape[:2]
    revealed_u8 = np.empty_like(secrets_n)
    analog, lost = list(range(b)), []  # images the analog path reveals; images nothing reveals
    # Images whose secrets and revealed secrets are the same arrays as another's (a level's decoded streams of the
    # job's shared secrets) have that image's figures: scored once.
    shared: dict[int, tuple[int, int]] = {}
    alone = no_network(engine, layers)  # the network wrote nothing (--layers digital, or an analog share of 0)
    if found is not None:
        analog = [i for i, (level, _) in enumerate(found) if level is None]
        for i, (level, images) in enumerate(found):
            active[i].row["layer"] = level or (None if alone else ANALOG)
            if images is not None:
                revealed_u8[i] = np.stack(images)
                shared[i] = (id(images), id(active[i].secrets_n))
        if alone:  # no analog path was written: an image no level reads has no secret (and no figures)
            revealed_u8[analog] = 0
            lost, analog = analog, []
    if analog:
        # The stego was just made here, on the code's grid: a model with registration need not search for it.
        revealed = engine.reveal(to_nchw(back_n[analog]), aligned=True)  # (B', 3K, N, N)
        revealed_u8[analog] = quantize(revealed).reshape(len(analog), k, 3, size, size).transpose(0, 1, 3, 4, 2)
    ps, ss = _secret_metrics(revealed_u8, secrets_n, shared)
    for i, s in enumerate(active):
        s.row["ssim_cover"] = float(ssim_cover[i])
        if i not in lost:
            set_secret_metrics(s.row, ps[i * k : (i + 1) * k], ss[i * k : (i + 1) * k])
        s.cover_n = s.secrets_n = s.cover_f = None
    return active


@functools.cache
def _checks() -> ThreadPoolExecutor:
    """The thread that runs ``verify_batch``'s digital checks beside its scoring (one pool per process). One where
    the check decodes in its own thread (no decoding worker: the C decoder, outside the GIL, by default): a second
    thread only put two decodes on the job's two cores, and the job was slower (``docs/model.md``). Two where a
    worker process decodes: one batch's check does its NumPy work while another waits on it."""
    from pipeline.model.digital.channel import DecodeWorkers

    return ThreadPoolExecutor(2 if DecodeWorkers.count() else 1, thread_name_prefix="digital-check")


def _secret_metrics(
    revealed: np.ndarray, secrets: np.ndarray, shared: dict[int, tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM of (B, K, N, N, 3) revealed against original secrets, flattened to (B * K,); ``shared``: image ->
    a tag its (revealed, original) pair shares with every image of the same tag (those are scored once)."""
    b, k = secrets.shape[:2]
    first: dict[tuple[int, int], int] = {}
    rep = np.array([first.setdefault(shared[i], i) if i in shared else i for i in range(b)])
    scored = np.array(sorted(set(rep.tolist())))  # np.unique imports numpy.ma: 8 ms of GIL in a job's first batch
    flat = secrets.shape[2:]
    ps, ss = per_image_metrics(revealed[scored].reshape(-1, *flat), secrets[scored].reshape(-1, *flat))
    where = np.searchsorted(scored, rep)
    return ps.reshape(-1, k)[where].reshape(-1), ss.reshape(-1, k)[where].reshape(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Extract


def reveal_batch(
    engine: Engine, samples: Sequence[Sample], size: int, references: np.ndarray | None, layers: str = "all"
) -> dict[str, float]:
    """Reveal the K secrets of each active decoded sample at the network size, in place.

    Args:
        references: (K, N, N, 3) uint8 originals to score against, or None.
        layers: "digital": read the digital layer alone (no network runs; an image no level reads reveals black, as
            with a model whose analog share is 0: its network wrote nothing to reveal).
    Sets ``sample.result`` to (K, N, N, 3) uint8, and the row's ``mark_score`` (the engine's detection score) and
    ``marked`` (the score against the model's calibrated threshold; with the digital layer: a level's CRC passed).
    The image goes to the engine as it is (no un-flipping here): the model's mirror sync (or the digital layer's
    grid search) decides whether the stego was mirrored and returns the secret in its original orientation.
    """
    active = [s for s in samples if s.active and s.image is not None]
    times = {"preprocess": 0.0, "reveal": 0.0, "metrics": 0.0}
    if not active:
        return times
    t0 = time.perf_counter()
    if engine.digital:
        grid, stegos_u8 = on_grid([s.image.rgb for s in active], size)
        stegos = to_nchw(stegos_u8)
    else:
        stegos = to_nchw(np.stack([to_network_size(s.image.rgb, size) for s in active]))
    t1 = time.perf_counter()
    b = len(active)
    if engine.digital:
        revealed, scores = _reveal_digital(engine, active, stegos, to_nchw(grid), size, layers)
    else:
        revealed, scores = engine.reveal_and_detect(stegos)
    k = revealed.shape[1] // 3
    secrets = quantize(revealed).reshape(b, k, 3, size, size).transpose(0, 1, 3, 4, 2)  # (B, K, N, N, 3)
    t2 = time.perf_counter()
    if references is not None:
        refs = np.broadcast_to(references[None], secrets.shape).reshape(b * k, size, size, 3)
        ps, ss = per_image_metrics(secrets.reshape(b * k, size, size, 3), refs)
    for i, s in enumerate(active):
        s.result = np.ascontiguousarray(secrets[i])
        s.image = None
        s.row["infer_ms"] = 1000 * (t2 - t0) / b
        if scores is not None:
            s.row["mark_score"] = float(scores[i])
            if not engine.digital and engine.detect_threshold is not None:
                s.row["marked"] = bool(scores[i] >= engine.detect_threshold)
        if references is not None:
            set_secret_metrics(s.row, ps[i * k : (i + 1) * k], ss[i * k : (i + 1) * k])
    times.update(preprocess=t1 - t0, reveal=t2 - t1, metrics=time.perf_counter() - t2)
    return times


# The digital layer reads a received image at up to this many times the network size (area-averaged down to it):
# enough to find a crop's grid, bounded for 50-megapixel inputs.
READ_SIDE = 2


def _received(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, h, w) float32: the received image, area-averaged when a side exceeds READ_SIDE x N
    (the aspect ratio kept, which a crop's grid search needs)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = READ_SIDE * size / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return to_nchw([rgb])


def on_grid(images: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """What a receiver reads of each (H, W, 3) uint8 image on the network's grid: its exact area average
    (``to_network_size_float``; (B, N, N, 3) float32 grey levels), which the embed job's upsampling inverts, so the
    digital layer reads an unmoved stego where it was written (reading ``_received``'s smaller copy instead loses
    the top level of most 1 MP stegos to the resampling's blur); and that average rounded to 8 bits ((B, N, N, 3)
    uint8), the network's input. One resize serves both; OpenCV's own 8-bit area average differs from the rounding
    only where a sum ties at a half (no value of 40 held-out 1 MP crops)."""
    grid = np.stack([to_network_size_float(img, size) for img in images])
    return grid, np.clip(np.rint(grid), 0, 255).astype(np.uint8)


def _on_grid_where(images: Sequence[np.ndarray], size: int, read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``on_grid`` of the images where ``read`` (B,) bool, each resized once; the others (stored at N and read
    intact by ``settle``) are their own 8-bit images, and their float rows are left unwritten: the check does not
    read them."""
    grid = np.empty((len(images), size, size, 3), np.float32)
    back_n = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(images):
        if img.shape[:2] == (size, size):  # stored at N: its own levels, float and 8-bit
            back_n[i] = img
            if read[i]:
                grid[i] = img
        else:  # what a receiver reads (settle reads only stegos stored at N: these are all read)
            grid[i] = to_network_size_float(img, size)
            np.copyto(back_n[i], np.clip(np.rint(grid[i]), 0, 255), casting="unsafe")
    return grid, back_n


def _reveal_digital(
    engine: Engine, active: Sequence[Sample], stegos: np.ndarray, grid: np.ndarray, size: int, layers: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """The digital layer's reading of each sample (``grid``: (B, 3, N, N) in [0, 1], their exact area averages,
    ``on_grid``), the analog reveal of each image no level decoded (moved back onto
    its grid where the search moved it), and per image the digital secret where a level decoded
    (``DigitalPart.choose``) -> (secrets (B, 3K, N, N), scores (B,)). Sets the rows' ``layer``, ``level_*``,
    ``message``, ``marked`` and ``key_id``."""
    import torch

    readings = [
        engine.stages.read_digital(_received(s.image.rgb, size), on_grid=grid[i : i + 1])[0]
        for i, s in enumerate(active)
    ]
    inputs = np.stack(
        [r.aligned[0].numpy() if r.aligned is not None else x for r, x in zip(readings, stegos, strict=True)]
    )
    moved = np.array([r.aligned is not None for r in readings])
    # The network reveals only the images no level decoded: elsewhere ``choose`` takes the level's secret.
    # A model whose network wrote nothing (an analog share of 0, or --layers digital) has no analog secret to give.
    alone = engine.digital_config.writes_alone(layers)
    undecoded = np.array([r.secrets is None for r in readings]) & (not alone)
    analog = np.zeros((len(active), 3 * engine.info.num_secrets, size, size), np.float32)
    if (undecoded & moved).any():
        analog[undecoded & moved] = engine.reveal(inputs[undecoded & moved], aligned=True)
    if (undecoded & ~moved).any():
        analog[undecoded & ~moved] = engine.reveal(inputs[undecoded & ~moved])
    out = np.empty_like(analog)
    key_id = engine.stages.key.key_id
    for i, (s, reading) in enumerate(zip(active, readings, strict=True)):
        chosen = engine.stages.digital.choose(reading, torch.from_numpy(analog[i]))
        out[i] = chosen.secrets.numpy()
        layer = None if alone and chosen.layer == ANALOG else chosen.layer
        s.row.update(layer=layer, marked=chosen.marked, key_id=key_id)
        s.row.update({f"level_{name}": ok for name, ok in chosen.levels.items()})
        if chosen.message is not None:
            s.row["message"] = chosen.message.decode("utf-8", "backslashreplace")
    return out, np.array([r.score for r in readings], np.float32)
