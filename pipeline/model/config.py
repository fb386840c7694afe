"""Model configuration as data: ``ModelConfig`` in sections, and the named presets ``tiny``, ``fast``, ``small`` and
``paper``.

A config has one section per kind of part, so a reader sees at once what is the paper's and what is ours:

    ModelConfig
      channels, num_secrets          the images: C channels, K secrets per cover
      network   NetworkConfig        the learned network: SRIS-Net's architecture as the paper leaves it open, or a
                                     baseline's (``arch``)
      ablation  AblationConfig       the paper's parts that an ablation switches off
      codes     CodesConfig          our analytic parts (``pipeline/model/codes/``), one section each: thumbnail,
                                     residual, deblur, register, mirror
      digital   DigitalConfig        our keyed digital layer (``pipeline/model/digital/``): a compressed secret in
                                     QIM codewords beside the analog path, and that path's share of the budget
      legacy    LegacyConfig         what only old checkpoints do

Every field is written in every checkpoint, so a checkpoint rebuilds exactly. A field added here is a new version
(``CONFIG_VERSION``): ``pipeline/model/migrate.py`` brings older checkpoints forward and fills the new field with
the value the older code used, explicitly (``tests/test_config.py`` fails when the fields change and the version
does not). ``ModelConfig.from_dict`` reads the current version only; ``migrate.config_from_dict`` reads any.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from pipeline.cli_fields import option
from pipeline.model.codes.layout import CodeLayout, residual_dims
from pipeline.model.digital.config import DigitalConfig

CONFIG_VERSION = 4
ARCHS = ("sris", "hinet", "unet")
MIRRORS = ("pilot", "pattern", "none")


@dataclass(frozen=True)
class NetworkConfig:
    """The learned network: SRIS-Net (``arch="sris"``) or a baseline with its interface.

    Attributes:
        arch: ``sris`` (SRIS-Net), ``hinet`` (HiNet-style invertible baseline) or ``unet`` (plain U-Net baseline).
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
        light_score: embed with a light score head distilled from the discriminator's score map instead of running
            the discriminator's trunk (``LightScore`` in ``pipeline/model/sris/discriminator.py``).
        hinet_blocks: coupling blocks of the HiNet baseline.
        unet_depth: scales of the U-Net baseline.
    """

    arch: str = field(
        default="sris",
        metadata=option("--baseline", "Train a baseline instead of SRIS-Net.", choices=("hinet", "unet"), default=None),
    )
    width: int = 48
    stem_stride: int = 4
    levels: int = 3
    level_widths: tuple[int, ...] = (48, 96, 96, 96)
    dms_widths: tuple[int, ...] = (48, 96)
    dms_blocks: int = 2
    dilations: tuple[int, ...] = (1, 2, 3)
    disc_width: int = 16
    score_floor: float = 0.3
    light_score: bool = field(
        default=False,
        metadata=option(
            "--light-score",
            "Embed with a light score head distilled (during training) from the discriminator's score map: a faster "
            "embed engine (see `distill-score` for a trained model).",
        ),
    )
    hinet_blocks: int = 6
    unet_depth: int = 3


@dataclass(frozen=True)
class AblationConfig:
    """The paper's parts an ablation switches off (False = the ablated variant): ``lpfdd`` (a Gaussian pyramid
    instead), ``glem_global`` (GLEM's global branch), ``sfm`` (DMSubNet's fusion; features are added instead) and
    ``score_map`` (embed at a uniform gain)."""

    lpfdd: bool = field(
        default=True,
        metadata=option(
            "--no-lpfdd", "Ablation: Gaussian pyramid instead of the Laplacian decomposition.", flag_value=False
        ),
    )
    glem_global: bool = field(
        default=True, metadata=option("--no-glem-global", "Ablation: GLEM without its global branch.", flag_value=False)
    )
    sfm: bool = field(
        default=True,
        metadata=option("--no-sfm", "Ablation: add shallow and deep features instead of SFM.", flag_value=False),
    )
    score_map: bool = field(
        default=True,
        metadata=option("--no-score-map", "Ablation: embed without the discriminator's score map.", flag_value=False),
    )


@dataclass(frozen=True)
class ThumbnailConfig:
    """The thumbnail code (``codes/thumbnail.py``; SRIS-Net only, baselines ignore it).

    Attributes:
        enabled: embed writes the secret's 8x8 and 4x4 block means into block-DCT coefficients of the cover through
            a learnable linear code initialised to an analytic one; reveal's learned path corrects its reading.
        amplitude: the code's initial amplitude in grey levels.
        detail_secrets: how many secrets (the first ones) the 4x4 detail code carries, 1 to K; each has its own
            coefficient (``DETAIL_COEFFS``).
        code_last: the code is written after the learned residual and cancels it in the code's coefficients as it
            cancels the cover's, so nothing the learned path embeds disturbs the code's reading (False: the code
            cancels the cover alone).
        base_layout: the base code's coefficients (``BASE_LAYOUTS``): ``low`` (robust) or ``quiet`` (the third and
            fourth secrets where photos have little energy, so writing them costs the cover less).
        base_tile: the 8x8 means are written through a DCT over each 4x4 group of blocks, each frequency at its own
            gain (``TileCode``).
    """

    enabled: bool = field(
        default=True,
        metadata=option(
            "--no-thumbnail-code", "Ablation: no analytic thumbnail code (the learned paths only).", flag_value=False
        ),
    )
    amplitude: float = field(
        default=10.0,
        metadata=option(
            "--thumbnail-amplitude",
            "The thumbnail code's amplitude in grey levels [default: the preset's, 10]: with K secrets each has its "
            "own code, so K = 2 or 4 needs a lower one to keep the cover's quality.",
            range=(1.0, 40.0),
            default=None,
        ),
    )
    detail_secrets: int = field(
        default=1,
        metadata=option(
            "--detail-secrets",
            "How many secrets (the first ones) the thumbnail code's 4x4 detail code carries, each in its own "
            "coefficient [default: 1]. More lifts those secrets' clean figures and costs the cover.",
            range=(1, 4),
            default=None,
        ),
    )
    code_last: bool = field(
        default=False,
        metadata=option(
            "--code-last",
            "Write the thumbnail code after the learned residual, cancelling it in the code's coefficients as the "
            "cover's, so the learned path cannot disturb the code (the K = 2 and K = 4 files use it).",
        ),
    )
    base_layout: str = field(
        default="low",
        metadata=option(
            "--base-layout",
            "The base code's coefficients [default: low]: quiet puts secrets 3 and 4 where photos have little "
            "energy, so K = 3 or 4 costs the cover less (and resists blur and JPEG less).",
            choices=("low", "quiet"),
            default=None,
        ),
    )
    base_tile: bool = field(
        default=False,
        metadata=option(
            "--base-tile",
            "The thumbnail code writes a DCT over each 4x4 group of 8x8 block means, each frequency at its own gain, "
            "instead of the means themselves (the same code power, spent where noise hurts least).",
        ),
    )


@dataclass(frozen=True)
class ResidualConfig:
    """The residual code (``codes/residual.py``): what reveal still misses at the 2x2-block level is written into the
    stego's free checkerboard coefficients at ``gain`` (0 = off) and added back where it survived."""

    gain: float = field(
        default=0.0,
        metadata=option(
            "--residual-gain",
            "The residual code: write what reveal still misses at the 2x2-block level into the stego's free "
            "checkerboard coefficients at this gain (secret units per coefficient); reveal adds it back where it "
            "survived. 0 = off; the shipped model uses 0.06.",
            range=(0.0, 1.0),
        ),
    )


@dataclass(frozen=True)
class DeblurConfig:
    """Reveal first estimates a 3x3 blur from the thumbnail code's pilots and undoes it (``codes/deblur.py``; no
    weights)."""

    enabled: bool = field(
        default=False,
        metadata=option(
            "--deblur",
            "Reveal first estimates a 3x3 blur from the thumbnail code's pilots and undoes it (no weights); training "
            "reveals the attacked stegos the same way, so the learned path learns on what it will see.",
        ),
    )


@dataclass(frozen=True)
class RegisterConfig:
    """Reveal first finds the thumbnail code's 8x8 grid (a shift or crop of up to 15 px either way, a mirror) from
    its base pilot and moves the stego back into register (``codes/register.py``; no weights); the same search
    gives ``detect``'s score."""

    enabled: bool = False


@dataclass(frozen=True)
class MirrorConfig:
    """How reveal recognises a left-right mirrored stego (``codes/mirror.py``): ``decision`` ``pilot`` reads the
    thumbnail code's base pilot (needs the thumbnail code), ``pattern`` has embed add a faint fixed +-1 pattern of
    ``pattern_amplitude`` grey levels, ``none`` does not look."""

    decision: str = field(
        default="pattern",
        metadata=option(
            "--mirror",
            "How reveal recognises a mirrored stego: 'pilot' reads the thumbnail code's pilot (nothing added to the "
            "cover), 'pattern' has embed add a faint fixed pattern, 'none' does not look [default: the preset's, "
            "'pattern'].",
            choices=MIRRORS,
            default=None,
        ),
    )
    pattern_amplitude: float = 1.0


@dataclass(frozen=True)
class CodesConfig:
    """Our analytic parts, one section each (SRIS-Net with the thumbnail code; the others read or write that code,
    except the mirror pattern)."""

    thumbnail: ThumbnailConfig = field(default_factory=ThumbnailConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    deblur: DeblurConfig = field(default_factory=DeblurConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    mirror: MirrorConfig = field(default_factory=MirrorConfig)


@dataclass(frozen=True)
class LegacyConfig:
    """Behaviours only old checkpoints have: they load and run, nothing new is trained with them
    (``pipeline/model/legacy.py``).

    Attributes:
        flip_head: a small learned classifier in reveal decides whether the stego was mirrored (the first models).
        texture_weighting: the thumbnail code's written values scaled per block by ``(1 - a) + a * texture`` of the
            cover; 0 = off.
        reveal: field overrides of the network section for the revealer alone (a revealer wider than the embedder),
            e.g. ``{"width": 48}``.
    """

    flip_head: bool = False
    texture_weighting: float = 0.0
    reveal: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.flip_head or self.texture_weighting > 0 or bool(self.reveal)


@dataclass(frozen=True)
class ModelConfig:
    """A hiding model: its images, its learned network, the ablations, our analytic codes and legacy behaviours.

    Shapes: cover (B, C, N, N) with C = ``channels`` (3 for RGB, 1 for grayscale), secrets (B, K*C, N, N) with K =
    ``num_secrets`` (1 to 4), N a multiple of ``multiple``.
    """

    channels: int = field(default=3, metadata=option("--channels", "Image channels.", choices=(1, 3), always=True))
    num_secrets: int = field(
        default=1, metadata=option("--secrets", "Secrets per cover (K).", range=(1, 4), always=True)
    )
    network: NetworkConfig = field(default_factory=NetworkConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    codes: CodesConfig = field(default_factory=CodesConfig)
    digital: DigitalConfig = field(default_factory=DigitalConfig)
    legacy: LegacyConfig = field(default_factory=LegacyConfig)

    def __post_init__(self) -> None:
        for name, kind in _SECTIONS.items():  # sections given as dicts (from_dict, replace(legacy={...}))
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _build(kind, value))
        net, codes = self.network, self.codes
        if net.arch not in ARCHS:
            raise ValueError(f"unknown arch {net.arch!r}: expected sris, hinet or unet")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.num_secrets <= 4:
            raise ValueError(f"num_secrets must be between 1 and 4, got {self.num_secrets}")
        if codes.mirror.decision not in MIRRORS:
            raise ValueError(f"unknown mirror {codes.mirror.decision!r}: expected one of {', '.join(MIRRORS)}")
        if self.coded:
            layout = self.code_layout  # refuses a detail count outside 1..K and an unknown base layout
            if codes.residual.gain > 0 and residual_dims(layout) == 0:
                raise ValueError(f"residual_gain needs room the thumbnail code leaves free; {layout} leaves none")
        for name, on in (
            ("residual_gain", codes.residual.gain > 0),
            ("base_tile", codes.thumbnail.base_tile),
            ("deblur", codes.deblur.enabled),
            ("register", codes.register.enabled),
            ("code_last", codes.thumbnail.code_last),
            ("mirror='pilot'", codes.mirror.decision == "pilot"),
            ("legacy.texture_weighting", self.legacy.texture_weighting > 0),
        ):
            if on and not self.coded:
                raise ValueError(f"{name} needs SRIS-Net with the thumbnail code (it reads or writes that code)")
        if net.arch == "sris":
            if len(net.level_widths) != net.levels + 1:
                raise ValueError(f"level_widths needs levels + 1 = {net.levels + 1} entries, got {net.level_widths}")
            n = len(net.dilations)
            for w in (net.width, *net.level_widths, *net.dms_widths):
                if w % n:
                    raise ValueError(f"widths must be multiples of {n} (one share per MSIB branch), got {w}")

    @property
    def coded(self) -> bool:
        """SRIS-Net with the thumbnail code (the analytic codes of ``pipeline/model/codes/`` apply)."""
        return self.network.arch == "sris" and self.codes.thumbnail.enabled

    @property
    def code_layout(self) -> CodeLayout:
        """Which coefficients of the thumbnail code carry which secret."""
        t = self.codes.thumbnail
        return CodeLayout.of(self.num_secrets, t.detail_secrets, t.base_layout)

    @property
    def multiple(self) -> int:
        """Image sizes must be a multiple of this (stem fold times the deepest DMSubNet scale; 8 with the codes)."""
        m = self.network.stem_stride * 2 ** (len(self.network.dms_widths) - 1)
        return math.lcm(m, 8) if self.coded else m

    def to_dict(self) -> dict[str, Any]:
        """Every field, nested by section, with ``version``: what a checkpoint stores."""
        return {"version": CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """A config from ``to_dict``'s output of this version, every field present (``migrate.config_from_dict``
        reads older versions)."""
        version = int(d.get("version", 1))
        if version != CONFIG_VERSION:
            raise ValueError(
                f"a version-{version} config: read it with pipeline.model.migrate.config_from_dict "
                f"(ModelConfig.from_dict reads version {CONFIG_VERSION})"
            )
        missing = sorted(set(field_paths(cls)) - set(_paths(d)))
        if missing:
            raise ValueError(f"a version-{CONFIG_VERSION} config without {', '.join(missing)}: every field is written")
        return _build(cls, {k: v for k, v in d.items() if k != "version"})

    def with_overrides(self, **overrides: Any) -> ModelConfig:
        """This config with fields replaced, named by ``SHORT_NAMES`` (``residual_gain=0.06``), by a dotted path
        (``**{"codes.residual.gain": 0.06}``), or a whole section (``legacy={...}``)."""
        cfg = self
        for name, value in overrides.items():
            path = SHORT_NAMES.get(name, name).split(".")
            cfg = _replace_path(cfg, path, value)
        return cfg


_SECTIONS = {
    "network": NetworkConfig,
    "ablation": AblationConfig,
    "codes": CodesConfig,
    "digital": DigitalConfig,
    "legacy": LegacyConfig,
}
_CODE_SECTIONS = {
    "thumbnail": ThumbnailConfig,
    "residual": ResidualConfig,
    "deblur": DeblurConfig,
    "register": RegisterConfig,
    "mirror": MirrorConfig,
}

# Each field by a short name (the flat names of config version 2): what ``get_config``, ``with_overrides`` and a
# training run's ``model_overrides`` take.
SHORT_NAMES: dict[str, str] = {
    "channels": "channels",
    "num_secrets": "num_secrets",
    **{f.name: f"network.{f.name}" for f in fields(NetworkConfig)},
    **{f.name: f"ablation.{f.name}" for f in fields(AblationConfig)},
    "thumbnail_code": "codes.thumbnail.enabled",
    "thumbnail_amplitude": "codes.thumbnail.amplitude",
    "detail_secrets": "codes.thumbnail.detail_secrets",
    "code_last": "codes.thumbnail.code_last",
    "base_layout": "codes.thumbnail.base_layout",
    "base_tile": "codes.thumbnail.base_tile",
    "residual_gain": "codes.residual.gain",
    "deblur": "codes.deblur.enabled",
    "register": "codes.register.enabled",
    "mirror": "codes.mirror.decision",
    "pattern_amplitude": "codes.mirror.pattern_amplitude",
    "digital": "digital",
    "legacy": "legacy",
}


def field_paths(cls: type = ModelConfig, prefix: str = "") -> list[str]:
    """Every leaf field of a config class as a dotted path (``codes.residual.gain``), in declaration order."""
    out = []
    for f in fields(cls):
        sub = _section_type(cls, f.name)
        out += field_paths(sub, f"{prefix}{f.name}.") if sub is not None else [prefix + f.name]
    return out


def _paths(d: dict[str, Any], prefix: str = "") -> list[str]:
    """The leaf keys of a nested config dict as dotted paths (``legacy.reveal`` is a leaf: a dict of overrides)."""
    out = []
    for k, v in d.items():
        if k == "version":
            continue
        if isinstance(v, dict) and f"{prefix}{k}" != "legacy.reveal":
            out += _paths(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def _build(cls: type, d: dict[str, Any]) -> Any:
    """A (nested) config dataclass from a dict: sections from their dicts, lists as tuples; unknown keys refused."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    kw = {}
    for k, v in d.items():
        sub = _section_type(cls, k)
        if sub is not None and isinstance(v, dict):
            kw[k] = _build(sub, v)
        else:
            kw[k] = tuple(v) if isinstance(v, list) else v
    return cls(**kw)


def _section_type(cls: type, name: str) -> type | None:
    """The config class of section ``name`` of ``cls`` (None for a plain field)."""
    if cls is ModelConfig:
        return _SECTIONS.get(name)
    return _CODE_SECTIONS.get(name) if cls is CodesConfig else None


def _replace_path(obj: Any, path: list[str], value: Any) -> Any:
    head, rest = path[0], path[1:]
    if not is_dataclass(obj) or head not in {f.name for f in fields(obj)}:
        raise ValueError(f"unknown model config field {'.'.join(path)!r} (in {type(obj).__name__})")
    if rest:
        return replace(obj, **{head: _replace_path(getattr(obj, head), rest, value)})
    sub = _section_type(type(obj), head)
    if sub is not None and isinstance(value, dict):
        value = _build(sub, value)
    elif isinstance(value, list):
        value = tuple(value)
    return replace(obj, **{head: value})


def _preset(**network: Any) -> ModelConfig:
    return ModelConfig(network=NetworkConfig(**network))


PRESETS: dict[str, ModelConfig] = {
    # Test-sized: a forward pass in milliseconds.
    "tiny": _preset(
        width=6, stem_stride=2, levels=2, level_widths=(6, 12, 12), dms_widths=(6, 12), dms_blocks=1, disc_width=8
    ),
    # CPU-trainable: 4x4 pixel blocks folded into channels, 48-96 channels at N/4 (wider convs use a CPU better than
    # more pixels at half the width).
    "small": ModelConfig(),
    # The shipped models' network (their model cards list the codes they add): under half of small's FLOPs, for CPU
    # batch jobs.
    "fast": _preset(width=24, level_widths=(24, 48, 48, 48), dms_widths=(24, 48), dms_blocks=1),
    # Full width at N/2, for GPU training.
    "paper": _preset(
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
    """A preset by name, with fields overridden by short name or dotted path (``num_secrets=2``, ``arch="unet"``;
    ``ModelConfig.with_overrides``)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
    return base.with_overrides(**overrides)
