"""Model configuration: one dataclass and the named presets ``tiny``, ``small`` and ``paper``.

Every choice the paper leaves open (widths, pyramid depth, block counts, score-map gain) is a field here, so a
checkpoint that carries its config can be rebuilt exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of SRIS-Net (or of a baseline with the same interface).

    Attributes:
        arch: ``sris`` (SRIS-Net), ``hinet`` (HiNet-style invertible baseline) or ``unet`` (plain U-Net baseline).
        channels: image channels C (3 for RGB, 1 for grayscale).
        num_secrets: K, the number of secret images hidden in each cover (1 to 4).
        width: feature width w of the shallow features (a multiple of 3, one third per MSIB branch).
        stem_stride: 2 folds 2x2 pixel blocks into channels before the shallow conv (pixel-unshuffle); the network
            then works at N/2 and unfolds at the end. 1 keeps full resolution (GPU-sized).
        levels: LPFDD band-pass levels; the pyramid also has one low-pass residual below them.
        level_widths: feature width of the progressive embedding at each pyramid level, finest first
            (``levels + 1`` entries, the last for the low-pass level).
        dms_widths: widths of the DMSubNet encoder/decoder scales, finest first.
        dms_blocks: MSIBs per DMSubNet scale.
        dilations: receptive fields of the MSIB branches.
        disc_width: width of the dual-task discriminator trunk.
        score_floor: minimum embedding gain where the score map is 0 (flat, easily detectable regions); the gain is
            ``score_floor + (1 - score_floor) * score``.
        lpfdd / glem_global / sfm / score_map: ablation switches (False = the ablated variant).
        flip_head: a small learned classifier in reveal that decides whether the stego was mirrored (superseded by
            ``flip_sync``: it never learned on the CPU budget; kept so the first checkpoints still load).
        flip_sync: embed adds a fixed faint +-1 block pattern and reveal un-mirrors an image that holds its mirror
            (``pipeline/model/sync.py``); ``sync_amplitude`` is its amplitude in grey levels.
        mirror_pilot: with ``flip_sync``, reveal decides whether a stego was mirrored from the carrier's base pilot
            (``CarrierReader.mirrored``), which every stego carries anyway, and embed adds no sync pattern: its cover
            cost (0.006 of SSIM on stage 13's weights) is freed; False for every model before stage 14.
        carrier_texture: experimental, 0 = off (every shipped model): the carrier's written code is scaled per block
            by ``(1 - a) + a * texture`` of the cover (normalised to unit RMS per image), moving its energy out of
            flat regions where SSIM sees it; the reader divides the same map, computed from the stego, back out.
        fine_gain: SRIS-Net's fine code (``pipeline/model/fine.py``), 0 = off (every model before stage 8): embed
            writes what reveal still gets wrong at the 2x2-block level into the stego's checkerboard coefficients
            that the carrier leaves free, at this gain (coefficient per unit of secret); reveal adds it back where it
            survived.
        base_tile: the carrier's base code writes a tile transform of the 8x8 means (``TileCode`` in
            ``pipeline/model/carrier.py``: a 2-D DCT over 4x4 blocks, each frequency at its own gain) instead of the
            means themselves, the same code power spent where additive noise hurts the means least; False for every
            model before stage 12.
        deblur: SRIS-Net's reveal first estimates a 3x3 blur from the carrier's pilots and undoes it
            (``pipeline/model/deblur.py``; inference only, no weights; False for every model before stage 9).
        light_score: SRIS-Net embeds with a light score head distilled from the discriminator's score map
            (``LightScore`` in ``pipeline/model/discriminator.py``) instead of running the discriminator's trunk.
        carrier: SRIS-Net embeds through a learnable linear code on 8x8 and 4x4 blocks initialised to an analytic one
            (``pipeline/model/carrier.py``) besides its deep path; ``carrier_amplitude`` is the code's initial
            amplitude in grey levels. Baselines ignore both.
        extra: free-form settings: ``hinet_blocks`` / ``unet_depth`` for the baselines; ``reveal`` (experimental)
            overrides fields for SRIS-Net's revealer alone, e.g. a wider revealer than embedder (``reveal_config``).
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
    flip_head: bool = False
    flip_sync: bool = True
    sync_amplitude: float = 1.0
    mirror_pilot: bool = False
    carrier: bool = True
    carrier_amplitude: float = 10.0
    carrier_texture: float = 0.0
    fine_gain: float = 0.0
    deblur: bool = False
    base_tile: bool = False
    light_score: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arch not in ("sris", "hinet", "unet"):
            raise ValueError(f"unknown arch {self.arch!r}: expected sris, hinet or unet")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.num_secrets <= 4:
            raise ValueError(f"num_secrets must be between 1 and 4, got {self.num_secrets}")
        if self.fine_gain > 0 and not (self.arch == "sris" and self.carrier):
            raise ValueError("fine_gain needs SRIS-Net with the carrier (its code lives where the carrier leaves room)")
        if self.mirror_pilot and not (self.arch == "sris" and self.carrier and self.flip_sync):
            raise ValueError("mirror_pilot needs SRIS-Net with the carrier (its pilot decides) and flip_sync")
        if self.base_tile and not (self.arch == "sris" and self.carrier):
            raise ValueError("base_tile needs SRIS-Net with the carrier (it changes the carrier's base code)")
        if self.deblur and not (self.arch == "sris" and self.carrier):
            raise ValueError("deblur needs SRIS-Net with the carrier (the carrier's pilots measure the blur)")
        if self.arch == "sris":
            if len(self.level_widths) != self.levels + 1:
                raise ValueError(f"level_widths needs levels + 1 = {self.levels + 1} entries, got {self.level_widths}")
            n = len(self.dilations)
            for w in (self.width, *self.level_widths, *self.dms_widths):
                if w % n:
                    raise ValueError(f"widths must be multiples of {n} (one share per MSIB branch), got {w}")

    @property
    def multiple(self) -> int:
        """Image sizes must be a multiple of this (stem fold times the deepest DMSubNet scale)."""
        m = self.stem_stride * 2 ** (len(self.dms_widths) - 1)
        return math.lcm(m, 8) if self.carrier and self.arch == "sris" else m

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        # Checkpoints written before mirror synchronisation existed used the learned flip head only; those written
        # before the carrier existed have none.
        d = {"flip_head": True, "flip_sync": False, **d} if "flip_sync" not in d else d
        d = {"carrier": False, **d}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kw)


PRESETS: dict[str, ModelConfig] = {
    # Test-sized: a forward pass in milliseconds.
    "tiny": ModelConfig(
        width=6, stem_stride=2, levels=2, level_widths=(6, 12, 12), dms_widths=(6, 12), dms_blocks=1, disc_width=8
    ),
    # The CPU-trainable default shipped with the package. Folding 4x4 pixel blocks into channels (stem_stride 4) and
    # working at N/4 with 48-96 channels trained 2x faster per image on the 2-core CPU than N/2 with 24-48 channels
    # at similar FLOPs (wider convs use the CPU better).
    "small": ModelConfig(),
    # Under half of small's FLOPs (0.85 + 0.47 GFLOPs at 256 px with the carrier, 0.34M generator parameters), for
    # CPU batch jobs. Below this size the job gets no faster on the 2-vCPU CPU: full-resolution passes (folds,
    # interpolations, element-wise ops), not convolution FLOPs, set the pace there (README, Status).
    "fast": ModelConfig(width=24, level_widths=(24, 48, 48, 48), dms_widths=(24, 48), dms_blocks=1),
    # Full width and full resolution, for GPU training.
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
