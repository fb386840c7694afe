"""Assemble a hiding model from its parts: ``build_model(config)``.

Each part is built by what the config asks for and handed to ``HidingModel``'s constructor; nothing is attached
afterwards. The learned network (SRIS-Net's paths, or a baseline's) knows nothing of our codes: a revealer that
reads the thumbnail code's estimate is built *guided*, and that is all it is told.

Parts are built in a fixed order (discriminator, embed path, thumbnail writer, thumbnail reader, reveal path, light
score head, legacy flip head): default initialisations draw from torch's generator, so the order fixes what a seed
gives.
"""

from __future__ import annotations

from pipeline.model.codes.mirror import MirrorDecision
from pipeline.model.codes.register import Registration
from pipeline.model.codes.residual import ResidualCode
from pipeline.model.codes.restore import Restoration
from pipeline.model.codes.thumbnail import ThumbnailCode, ThumbnailReader, ThumbnailWriter
from pipeline.model.config import ModelConfig
from pipeline.model.digital.part import DigitalPart
from pipeline.model.hiding import HidingModel
from pipeline.model.legacy import FlipHead, reveal_config
from pipeline.model.sris.discriminator import DualTaskDiscriminator, LightScore
from pipeline.model.sris.net import SRISEmbedder, SRISRevealer


def thumbnail_code(cfg: ModelConfig) -> ThumbnailCode | None:
    """The thumbnail code of a coded config (writer, then reader), else None."""
    if not cfg.coded:
        return None
    t, k, c = cfg.codes.thumbnail, cfg.num_secrets, cfg.channels
    writer = ThumbnailWriter(c, k, t.amplitude, t.base_tile, cfg.code_layout)
    reader = ThumbnailReader(c, k, t.amplitude, t.base_tile, cfg.code_layout)
    return ThumbnailCode(writer, reader)


def build_model(cfg: ModelConfig) -> HidingModel:
    """An untrained hiding model for ``cfg`` (SRIS-Net or a baseline, with our codes where the config has them)."""
    discriminator = DualTaskDiscriminator(cfg.channels, cfg.network.disc_width)
    if cfg.network.arch == "sris":
        embedder = SRISEmbedder(cfg, quiet_start=cfg.coded)
        thumbnail = thumbnail_code(cfg)
        revealer = SRISRevealer(reveal_config(cfg), guided=thumbnail is not None)
    else:
        from pipeline.model import baselines

        thumbnail = None
        embedder, revealer = baselines.build_paths(cfg)
    light = cfg.network.light_score and cfg.ablation.score_map and cfg.network.arch == "sris"
    codes = cfg.codes
    residual_code = None
    if codes.residual.gain > 0:  # the config refuses it without the thumbnail code
        residual_code = ResidualCode(codes.residual.gain, cfg.code_layout, cfg.channels)
    restoration = None
    if codes.register.enabled or codes.deblur.enabled:  # the config refuses both without the thumbnail code
        restoration = Restoration(
            thumbnail, cfg.code_layout, codes.register.enabled, codes.deblur.enabled, residual_code is not None
        )
    mirrored = thumbnail.reader.mirrored if thumbnail is not None else None
    return HidingModel(
        cfg,
        embedder=embedder,
        revealer=revealer,
        discriminator=discriminator,
        light_score=LightScore(cfg.channels) if light else None,
        thumbnail=thumbnail,
        residual_code=residual_code,
        mirror=MirrorDecision(codes.mirror.decision, codes.mirror.pattern_amplitude, mirrored),
        restoration=restoration,
        detector=Registration(thumbnail.reader) if thumbnail is not None else None,
        flip_head=FlipHead(cfg.channels) if cfg.legacy.flip_head else None,
        digital=DigitalPart(cfg.digital, cfg.channels) if cfg.digital.enabled else None,
    )


def with_digital(model: HidingModel, **changes: object) -> HidingModel:
    """The same weights with the digital layer's config changed (``DigitalConfig`` fields, e.g. ``analog_gain`` or
    ``levels``): what a study of the layer's settings compares. The model is in eval mode."""
    import dataclasses

    digital = dataclasses.replace(model.config.digital, **changes)
    out = build_model(dataclasses.replace(model.config, digital=digital))
    out.load_state_dict(model.state_dict())
    return out.eval()
