"""Model configuration: one dataclass and the named presets ``tiny``, ``fast``, ``small`` and ``paper``.

Every choice the paper leaves open (widths, pyramid depth, block counts, score-map gain) and every analytic part of
our own is a field here, so a checkpoint that carries its config rebuilds exactly. Checkpoints of older versions of
this config are brought up to date by ``pipeline/model/migrate.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pipeline.model.codes.residual import dims as residual_dims
from pipeline.model.codes.thumbnail import CodeLayout

CONFIG_VERSION = 2
MIRRORS = ("pilot", "pattern", "none")


@dataclass(frozen=True)
class LegacyConfig:
    """Behaviours only old checkpoints have: they load and run, nothing new is trained with them.

    Attributes:
        flip_head: a small learned classifier in reveal decides whether the stego was mirrored (the first models).
        texture_weighting: the thumbnail code's written values scaled per block by ``(1 - a) + a * texture`` of the
            cover; 0 = off.
        reveal: field overrides for the revealer alone (a revealer wider than the embedder), e.g. ``{"width": 48}``.
    """

    flip_head: bool = False
    texture_weighting: float = 0.0
    reveal: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.flip_head or self.texture_weighting > 0 or bool(self.reveal)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of SRIS-Net (or of a baseline with the same interface).

    The paper's parts:
        arch: ``sris`` (SRIS-Net), ``hinet`` (HiNet-style invertible baseline) or ``unet`` (plain U-Net baseline).
        channels: image channels C (3 for RGB, 1 for grayscale).
        num_secrets: K, the number of secret images hidden in each cover (1 to 4).
        width: feature width w of the shallow features (a multiple of 3, one third per MSIB branch).
        stem_stride: s; s x s pixel blocks are folded into channels before the shallow conv, so the network works at
            N/s and unfolds at the end (1 keeps full resolution).
        levels: LPFDD band-pass levels; the pyramid also has one low-pass residual below them.
        level_widths: feature width of the progressive embedding at each pyramid level, finest first
            (``levels + 1`` entries, the last for the low-pass level).
        dms_widths: widths of the DMSubNet encoder/decoder scales, finest first.
        dms_blocks: MSIBs per DMSubNet scale.
        dilations: receptive fields of the MSIB branches.
        disc_width: width of the dual-task discriminator trunk.
        score_floor: embedding gain where the score map is 0; the gain is ``score_floor + (1 - score_floor) * score``.
        lpfdd / glem_global / sfm / score_map: ablation switches (False = the ablated variant).
        light_score: embed with a light score head distilled from the discriminator's score map instead of running
            the discriminator's trunk (``LightScore`` in ``pipeline/model/sris/discriminator.py``).

    Our analytic parts (``pipeline/model/codes/``; SRIS-Net only, baselines ignore them):
        thumbnail_code: embed writes the secret's 8x8 and 4x4 block means into block-DCT coefficients of the cover
            through a learnable linear code initialised to an analytic one; reveal's deep path corrects its reading.
        thumbnail_amplitude: the code's initial amplitude in grey levels.
        detail_secrets: how many secrets (the first ones) the 4x4 detail code carries, 1 to K; each has its own
            coefficient (``DETAIL_COEFFS``).
        code_last: the thumbnail code is written after the learned residual and cancels it in the code's
            coefficients as it cancels the cover's, so nothing the learned path embeds disturbs the code's reading
            (False: the code cancels the cover alone, as in the models before it).
        base_layout: the base code's coefficients (``BASE_LAYOUTS``): ``low`` (robust) or ``quiet`` (the third and
            fourth secrets where photos have little energy, so writing them costs the cover less).
        base_tile: the 8x8 means are written through a DCT over each 4x4 group of blocks, each frequency at its own
            gain (``TileCode``).
        residual_gain: the residual code, 0 = off: what reveal still misses at the 2x2-block level is written into
            the stego's free checkerboard coefficients at this gain, and added back where it survived.
        deblur: reveal first estimates a 3x3 blur from the thumbnail code's pilots and undoes it (no weights).
        register: reveal first finds the thumbnail code's 8x8 grid (a shift or crop of up to 15 px either way, a
            mirror) from its base pilot and moves the stego back into register (no weights); the same search gives
            ``detect``'s score.
        mirror: how reveal recognises a left-right mirrored stego: ``pilot`` reads the thumbnail code's base pilot
            (needs ``thumbnail_code``), ``pattern`` has embed add a faint fixed +-1 pattern of ``pattern_amplitude``
            grey levels, ``none`` does not look.

        extra: baseline settings (``hinet_blocks``, ``unet_depth``).
        legacy: behaviours of old checkpoints (``LegacyConfig``).
    """

    arch: str = "sris"
    channels: int = 3
    num_secrets: int = 1
    width: int = 48
    stem_stride: int = 4
    levels: int = 3
    level_widths: tuple[int, ...] = (48, 96, 96, 96)
    dms_widths: tuple[int, ...] = (48, 96)
    dms_blocks: int = 2
    dilations: tuple[int, ...] = (1, 2, 3)
    disc_width: int = 16
    score_floor: float = 0.3
    lpfdd: bool = True
    glem_global: bool = True
    sfm: bool = True
    score_map: bool = True
    light_score: bool = False
    thumbnail_code: bool = True
    thumbnail_amplitude: float = 10.0
    detail_secrets: int = 1
    code_last: bool = False
    base_layout: str = "low"
    base_tile: bool = False
    residual_gain: float = 0.0
    deblur: bool = False
    register: bool = False
    mirror: str = "pattern"
    pattern_amplitude: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    legacy: LegacyConfig = field(default_factory=LegacyConfig)

    def __post_init__(self) -> None:
        if isinstance(self.legacy, dict):  # from a dict (from_dict, replace(legacy={...}))
            object.__setattr__(self, "legacy", LegacyConfig(**self.legacy))
        if self.arch not in ("sris", "hinet", "unet"):
            raise ValueError(f"unknown arch {self.arch!r}: expected sris, hinet or unet")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.num_secrets <= 4:
            raise ValueError(f"num_secrets must be between 1 and 4, got {self.num_secrets}")
        if self.mirror not in MIRRORS:
            raise ValueError(f"unknown mirror {self.mirror!r}: expected one of {', '.join(MIRRORS)}")
        coded = self.arch == "sris" and self.thumbnail_code
        if coded:
            layout = self.code_layout  # refuses a detail count outside 1..K and an unknown base layout
            if self.residual_gain > 0 and residual_dims(layout) == 0:
                raise ValueError(f"residual_gain needs room the thumbnail code leaves free; {layout} leaves none")
        for name, on in (
            ("residual_gain", self.residual_gain > 0),
            ("base_tile", self.base_tile),
            ("deblur", self.deblur),
            ("register", self.register),
            ("code_last", self.code_last),
            ("mirror='pilot'", self.mirror == "pilot"),
            ("legacy.texture_weighting", self.legacy.texture_weighting > 0),
        ):
            if on and not coded:
                raise ValueError(f"{name} needs SRIS-Net with the thumbnail code (it reads or writes that code)")
        if self.arch == "sris":
            if len(self.level_widths) != self.levels + 1:
                raise ValueError(f"level_widths needs levels + 1 = {self.levels + 1} entries, got {self.level_widths}")
            n = len(self.dilations)
            for w in (self.width, *self.level_widths, *self.dms_widths):
                if w % n:
                    raise ValueError(f"widths must be multiples of {n} (one share per MSIB branch), got {w}")

    @property
    def code_layout(self) -> CodeLayout:
        """Which coefficients of the thumbnail code carry which secret."""
        return CodeLayout.of(self.num_secrets, self.detail_secrets, self.base_layout)

    @property
    def coded(self) -> bool:
        """SRIS-Net with the thumbnail code (the analytic codes of ``pipeline/model/codes/`` apply)."""
        return self.arch == "sris" and self.thumbnail_code

    @property
    def multiple(self) -> int:
        """Image sizes must be a multiple of this (stem fold times the deepest DMSubNet scale; 8 with the codes)."""
        m = self.stem_stride * 2 ** (len(self.dms_widths) - 1)
        return math.lcm(m, 8) if self.coded else m

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """A config from ``to_dict``'s output of any version (older ones are migrated first)."""
        from pipeline.model.migrate import migrate_config

        d = migrate_config(d)
        known = {f.name for f in fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kw)


PRESETS: dict[str, ModelConfig] = {
    # Test-sized: a forward pass in milliseconds.
    "tiny": ModelConfig(
        width=6, stem_stride=2, levels=2, level_widths=(6, 12, 12), dms_widths=(6, 12), dms_blocks=1, disc_width=8
    ),
    # CPU-trainable: 4x4 pixel blocks folded into channels, 48-96 channels at N/4 (wider convs use a CPU better than
    # more pixels at half the width).
    "small": ModelConfig(),
    # The shipped default's size: under half of small's FLOPs, for CPU batch jobs.
    "fast": ModelConfig(width=24, level_widths=(24, 48, 48, 48), dms_widths=(24, 48), dms_blocks=1),
    # Full width at N/2, for GPU training.
    "paper": ModelConfig(
        width=48,
        stem_stride=2,
        levels=3,
        level_widths=(48, 96, 192, 192),
        dms_widths=(48, 96, 192),
        dms_blocks=2,
        disc_width=32,
    ),
}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, with fields overridden (e.g. ``num_secrets=2``, ``arch="unet"``)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
    return replace(base, **overrides)
