"""The embed job's digital layer in NumPy: write it where no network runs, and check every stored stego.

``CpuDigitalStage`` is what ``embed_batch`` and ``verify_batch`` call for a model with the digital layer when the
network writes nothing (``--layers digital``, or a model whose analog share is 0), and for the check of any lossless
output: the same layer as ``AnalyticStages.write_digital`` and ``verify_digital`` (``digital/cpu_path.py`` says how
the two agree), without torch. Images are (B, N, N, 3) float32 grey levels, as the job holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

from pipeline.model.digital.codewords import LayerCode, PreparedCache, PreparedSecrets, level_secrets
from pipeline.model.digital.config import DigitalConfig
from pipeline.model.digital.cpu_path import CpuPath, clip_keeping_luma
from pipeline.model.digital.keys import Key

T = TypeVar("T")


class CpuDigitalStage:
    """A model's digital layer (``config``) under ``key``, in NumPy."""

    def __init__(self, config: DigitalConfig, key: Key) -> None:
        self.config, self.key = config, key
        self.code = LayerCode(config, key)
        self.path = CpuPath(self.code)
        self._prepared = PreparedCache()

    def prepare(self, secrets: np.ndarray, message_room: int | None) -> PreparedSecrets:
        """One image's K secrets (K, N, N, 3) uint8, coded for every level (``LayerCode.prepare``), once per
        content."""
        return self._prepared.get(self.code, list(secrets), message_room)

    def groups(
        self, secrets: list[np.ndarray], message_room: int | None
    ) -> tuple[list[PreparedSecrets], list[tuple[PreparedSecrets, list[int]]]]:
        """Each image's prepared secrets, and the images grouped by them (the layer runs once a group). A job's
        shared secrets are one array: it is looked up once."""
        by_array: dict[int, PreparedSecrets] = {}
        groups: dict[int, tuple[PreparedSecrets, list[int]]] = {}
        each = []
        for i, s in enumerate(secrets):
            if id(s) not in by_array:
                by_array[id(s)] = self.prepare(s, message_room)
            p = by_array[id(s)]
            groups.setdefault(id(p), (p, []))[1].append(i)
            each.append(p)
        return each, list(groups.values())

    def write(
        self,
        cover: np.ndarray,
        secrets: list[np.ndarray],
        messages: list[bytes | None] | None,
        message_room: int | None,
        active: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """Covers (B, N, N, 3) float32 grey levels (their unrounded area averages) and each image's secrets ->
        each stego (N, N, 3) float32, every level written and clipped keeping luma (``clip_keeping_luma``; the job
        stores 8 bits), yielded one image at a time. ``active``: the covers' ``active_blocks`` where the caller has
        them.

        The levels are written on the batch's block transforms at once (``CpuPath.luma_change``); the pixels, one
        image at a time, so that the caller stores each stego while it is still in the core's cache: a batch of
        eight is 6 MB of float32 at 256 px, several times a core's L2, and the rounding alone took a third less
        time an image when run on one image after another (``docs/model.md``)."""
        active = self.path.active_blocks(cover) if active is None else active
        changes = self._per_group(cover, secrets, messages, message_room, active, self._luma_change)
        for x, dy in zip(cover, changes, strict=True):
            yield clip_keeping_luma(x + dy[..., None])

    def _luma_change(
        self, cover: np.ndarray, prepared: PreparedSecrets, messages: list[bytes | None] | None, active: np.ndarray
    ) -> np.ndarray:
        """``CpuPath.luma_change`` of the covers themselves: (B, N, N)."""
        return self.path.luma_change(cover, cover, prepared, messages, active)

    def store(
        self,
        cover: np.ndarray,
        secrets: list[np.ndarray],
        messages: list[bytes | None] | None,
        message_room: int | None,
        active: np.ndarray | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """``write``, each stego stored in 8 bits as the job stores a stego at the grid size (``store_at_n``) ->
        per image, in turn: the stored stego (N, N, 3) uint8 and its flipped blocks (``CpuPath.store``), which
        ``settle`` takes. With the C block writer, the layer's whole write of an image runs outside the GIL."""
        active = self.path.active_blocks(cover) if active is None else active
        yield from self._per_group(cover, secrets, messages, message_room, active, self.path.store)

    def _per_group(
        self,
        cover: np.ndarray,
        secrets: list[np.ndarray],
        messages: list[bytes | None] | None,
        message_room: int | None,
        active: np.ndarray,
        run: Callable[[np.ndarray, PreparedSecrets, list[bytes | None] | None, np.ndarray], Iterable[T]],
    ) -> Iterator[T]:
        """``run(covers, prepared, messages, active)`` once per group of images that share their prepared secrets
        (``groups``), each giving one result per image -> the results in the images' order. A job's shared
        secrets are one group: the batch goes as it is, no copies."""
        _, groups = self.groups(secrets, message_room)
        if len(groups) == 1:
            yield from run(cover, groups[0][0], messages, active)
            return
        out: list[T | None] = [None] * len(cover)
        for prepared, idx in groups:
            msg = None if messages is None else [messages[i] for i in idx]
            for i, res in zip(idx, run(cover[idx], prepared, msg, active[idx]), strict=True):
                out[i] = res
        yield from out

    def start_decoder(self) -> None:
        """Start the LDPC decoding worker where one runs (``channel.DecodeWorkers.count``: by default only where the
        C decoder is not built), with this layer's codes built, ahead of a check that may need it: one that reads a
        stego ``settle`` did not find intact (an interpreter of its own, a fraction of a second of start-up that a
        job whose stegos all settle never spends)."""
        from pipeline.model.digital.channel import WORKER

        WORKER.start(tuple(self.code.code_shape(i) for i in range(len(self.config.levels))))

    def settle(
        self,
        stored: np.ndarray,
        cover: np.ndarray | None,
        secrets: list[np.ndarray],
        messages: list[bytes | None] | None,
        message_room: int | None,
        active: np.ndarray | None = None,
        flipped: np.ndarray | None = None,
    ) -> np.ndarray:
        """Stegos stored at the grid size (B, N, N, 3) uint8, rewritten in place where storage flipped a reading
        (``CpuPath.settle``) -> (B,) bool: each reads its top level intact as stored (every written reading exact,
        and enough of them for its code: ``LayerCode.sure_when_exact``). ``active``: as ``write``'s (with it,
        ``cover`` may be None); ``flipped``: (B, N/8, N/8) bool, the blocks ``store`` found flipped (else found
        here)."""
        messages = messages if messages is not None else [None] * len(stored)
        _, groups = self.groups(secrets, message_room)
        active = self.path.active_blocks(cover) if active is None else active
        top = len(self.config.levels) - 1
        intact = self.code.sure_when_exact(top, active.reshape(len(stored), -1).sum(1))
        for prepared, idx in groups:
            part = stored if len(groups) == 1 else np.ascontiguousarray(stored[idx])
            wrong = None if flipped is None else flipped[idx]
            intact[idx] &= self.path.settle(part, prepared, [messages[i] for i in idx], active[idx], flipped=wrong)
            if len(groups) > 1:
                stored[idx] = part
        return intact

    def verify(
        self,
        stego: np.ndarray,
        cover: np.ndarray | None,
        secrets: list[np.ndarray],
        messages: list[bytes | None] | None,
        message_room: int | None,
        intact: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> list[tuple[str | None, list[np.ndarray] | None]]:
        """What a receiver reads from each lossless stego (B, N, N, 3) float32 grey levels, as stored and back on
        the grid: (the most detailed level that decodes, or None; its K secrets (N, N, 3) uint8), as
        ``AnalyticStages.verify_digital``. ``intact``: (B,) bool, the stegos ``settle`` read intact as stored, which
        are not read again (nor their rows of ``stego``). ``active``: as ``write``'s; with it, ``cover`` may be
        None."""
        messages = messages if messages is not None else [None] * len(stego)
        each, groups = self.groups(secrets, message_room)
        known = np.zeros(len(stego), bool) if intact is None else intact
        levels: list[str | None] = [self.config.levels[-1].name if k else None for k in known]
        if active is None and not known.all():
            active = self.path.active_blocks(cover)
        for prepared, idx in groups:
            idx = [i for i in idx if not known[i]]
            if not idx:
                continue
            covers = None if cover is None else cover[idx]
            found = self.path.written_levels(stego[idx], covers, prepared, [messages[i] for i in idx], active[idx])
            for i, level in zip(idx, found, strict=True):
                levels[i] = level
        return level_secrets(levels, each, self.config)
