"""The digital layer as a part of the hiding model: which key writes it, the secrets' coding once per job, the analog
path's share of the cover budget, and how a reveal chooses between the two paths.

``HidingModel`` holds one ``DigitalPart`` when its config's ``digital`` section is on. Embed: the analog path's change
to the cover is scaled (``analog_gain``, and ``analog_flat_gain`` more in the blocks the digital layer leaves flat),
then every level is written (``layer.py``). Reveal: the digital layer reads first (it also finds a moved grid); the
analog path reveals the image moved back onto that grid; each image takes the digital secret where a level decoded
and the analog one where none did (``choose``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model.digital import modulation as mod
from pipeline.model.digital.codewords import ANALOG, PreparedCache
from pipeline.model.digital.config import DigitalConfig
from pipeline.model.digital.keys import Key, resolve_key
from pipeline.model.digital.layer import DigitalLayer, DigitalReading, PreparedSecrets
from pipeline.model.digital.sync import resize_to


def _hwc_images(img: torch.Tensor, channels: int) -> list[np.ndarray]:
    """(K*C, N, N) uint8 -> K (N, N, 3) uint8 arrays."""
    per = []
    for j in range(img.shape[0] // channels):
        s = img[j * channels : (j + 1) * channels].permute(1, 2, 0).numpy()
        per.append(np.ascontiguousarray(np.repeat(s, 3, axis=2) if channels == 1 else s))
    return per


def from_u8_images(images: list[np.ndarray], channels: int, like: torch.Tensor) -> torch.Tensor:
    """K (N, N, 3) uint8 -> (K*C, N, N) float in [0, 1] on ``like``'s device and dtype (grey: the luma)."""
    out = []
    for a in images:
        t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).to(like.device, like.dtype) / 255
        out.append(mod.luma(t[None])[0] if channels == 1 else t)
    return torch.cat(out)


@dataclass
class Revelation:
    """What a reveal gives for one image: the secrets (K*C, N, N) in [0, 1], where they came from (a level's name
    or ``analog``), whether the image carries the mark (a level's CRC passed), the detection score, the per-image
    message, and each level's status."""

    secrets: torch.Tensor
    layer: str
    marked: bool
    score: float
    message: bytes | None = None
    levels: dict[str, bool] = field(default_factory=dict)


@dataclass(eq=False)
class DigitalPart:
    """A hiding model's digital layer: one ``DigitalLayer`` per key, the secrets' coding cached by content."""

    config: DigitalConfig
    channels: int = 3
    _layers: dict[str, DigitalLayer] = field(default_factory=dict, repr=False)
    _prepared: PreparedCache = field(default_factory=PreparedCache, repr=False)

    def layer(self, key: Key | None = None) -> DigitalLayer:
        """The layer of ``key`` (``keys.resolve_key``: the environment's key or the public key when None)."""
        key = resolve_key(key)
        if key.key_id not in self._layers:
            self._layers[key.key_id] = DigitalLayer(self.config, key)
        return self._layers[key.key_id]

    def prepare(self, layer: DigitalLayer, secrets: list[np.ndarray], message_room: int | None) -> PreparedSecrets:
        """``layer.prepare`` of one image's K secrets, cached by their bytes (a job codes its shared secrets once)."""
        return self._prepared.get(layer, secrets, message_room)

    def prepare_batch(
        self, layer: DigitalLayer, secrets: torch.Tensor, message_room: int | None
    ) -> tuple[list[PreparedSecrets], list[tuple[PreparedSecrets, list[int]]]]:
        """``prepare`` for each image's secrets (B, K*C, N, N) in [0, 1], and the images grouped by what they hide
        (each distinct set with the indices of its images, so that the layer runs once a group). Images whose 8-bit
        secrets are the same (a job's shared secrets) share one set: each is converted and looked up once."""
        u8 = (secrets.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        groups: dict[bytes, tuple[PreparedSecrets, list[int]]] = {}
        each = []
        last: tuple[np.ndarray, bytes] | None = None  # a job's shared secrets: equal to the image before, no hashing
        for i, img in enumerate(u8):
            if last is not None and np.array_equal(img, last[0]):
                tag = last[1]
            else:
                tag = hashlib.sha256(img.tobytes()).digest()
                last = (img, tag)
            if tag not in groups:
                groups[tag] = (self.prepare(layer, _hwc_images(torch.from_numpy(img), self.channels), message_room), [])
            groups[tag][1].append(i)
            each.append(groups[tag][0])
        return each, list(groups.values())

    # ------------------------------------------------------------------------------------------------------ embed
    def analog_gains(self, cover: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) cover in [0, 1] -> (B, 1, H, W): the scale of the analog path's change at each pixel (an
        edge that is not a multiple of 8 is padded by replication for the flatness test)."""
        h, w = cover.shape[-2:]
        pad = (0, -w % mod.BLOCK, 0, -h % mod.BLOCK)
        padded = F.pad(cover, pad, mode="replicate") if any(pad) else cover
        flat = mod.flat_blocks(mod.luma(padded * 255), self.config.flat_std).to(cover.dtype)  # (B, H/8, W/8)
        gains = self.config.analog_gain * (1 - flat * (1 - self.config.analog_flat_gain))
        return F.interpolate(gains[:, None], scale_factor=mod.BLOCK, mode="nearest")[..., :h, :w]

    def embed(
        self,
        cover: torch.Tensor,
        analog: torch.Tensor,
        secrets: torch.Tensor,
        key: Key | None = None,
        messages: list[bytes | None] | None = None,
        message_room: int | None = None,
        keep_luma: bool = False,
    ) -> torch.Tensor:
        """cover, the analog path's stego (B, C, N, N) and the secrets (B, K*C, N, N), floats in [0, 1] -> the stego
        with the analog change scaled and every level written, clamped. ``messages``: one per image (bytes, at most
        ``message_room``, which defaults to the longest given). ``keep_luma``: clip with
        ``modulation.clip_keeping_luma`` (the batch job's 8-bit storage) instead of a plain clamp."""
        if messages is not None and message_room is None:
            message_room = max((len(m) for m in messages if m is not None), default=0)
        layer = self.layer(key)
        n = self.config.size
        mixed = cover if analog is cover else cover + self.analog_gains(cover) * (analog - cover)
        on_grid = mixed.shape[-2:] == (n, n)
        grid_cover, grid_mixed = (cover, mixed) if on_grid else (resize_to(cover, n, n), resize_to(mixed, n, n))
        _, groups = self.prepare_batch(layer, secrets if on_grid else resize_to(secrets, n, n), message_room)
        out = torch.empty_like(grid_mixed)
        for prepared, idx in groups:
            msg = None if messages is None else [messages[i] for i in idx]
            out[idx] = layer.embed(grid_mixed[idx], grid_cover[idx], prepared, msg)
        clip = mod.clip_keeping_luma if keep_luma else lambda x: x.clamp(0, 1)
        if on_grid:
            return clip(out)
        change = F.interpolate(out - grid_mixed, size=mixed.shape[-2:], mode="bilinear", align_corners=False)
        return clip(mixed + change)

    # ------------------------------------------------------------------------------------------------------ reveal
    def read(
        self, images: torch.Tensor, key: Key | None = None, search: bool = True, on_grid: torch.Tensor | None = None
    ) -> list[DigitalReading]:
        """The digital layer's reading of each image (B, C, H, W) in [0, 1] (``DigitalLayer.read``; ``on_grid``
        (B, C, N, N): the images' exact area averages to the grid)."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
            on_grid = None if on_grid is None else on_grid.expand(-1, 3, -1, -1)
        return self.layer(key).read(images, search, on_grid)

    def choose(self, reading: DigitalReading, analog: torch.Tensor) -> Revelation:
        """One image's revelation from its digital reading and the analog path's secrets (K*C, N, N): the digital
        secret where a level decoded (the most detailed one), else the analog one."""
        levels = {lv.name: lv.ok for lv in reading.levels}
        if reading.secrets is not None:
            secrets = from_u8_images(reading.secrets, self.channels, analog)
            if secrets.shape[-2:] != analog.shape[-2:]:
                secrets = resize_to(secrets[None], *analog.shape[-2:])[0]
            return Revelation(secrets, reading.level, True, reading.score, reading.message, levels)
        return Revelation(analog, ANALOG, reading.marked, reading.score, reading.message, levels)
