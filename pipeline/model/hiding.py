"""The interface every hiding network shares (SRIS-Net and the baselines): raw training paths and clamped public ones.

Shapes: cover (B, C, N, N), secrets (B, K*C, N, N), N a multiple of ``config.multiple``; images float in [0, 1].
Subclasses set ``embedder(cover, secrets, score) -> residual`` and ``revealer(stego) -> (secrets, flip logit)``.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.codes.mirror import add_template, unmirror
from pipeline.model.config import ModelConfig
from pipeline.model.sris.discriminator import DualTaskDiscriminator


class HidingModel(nn.Module):
    """``embed(cover, secrets) -> stego`` and ``reveal(stego) -> secrets``, clamped to [0, 1].

    Training uses ``embed_raw`` / ``reveal_raw`` (unclamped outputs, flip logit). Every model carries the dual-task
    discriminator (the adversarial loss); only SRIS-Net embeds with its score map.
    """

    embedder: nn.Module
    revealer: nn.Module

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.discriminator = DualTaskDiscriminator(cfg.channels, cfg.network.disc_width)
        # A light score head distilled from the discriminator's map: SRIS-Net with ``config.light_score`` sets one.
        # (An instance attribute, not a class one: a class attribute would shadow the registered submodule.)
        self.light_score: nn.Module | None = None

    def score_map(self, cover: torch.Tensor) -> torch.Tensor:
        """Where to embed: (B, C, H, W) -> (B, 1, H, W) in [0, 1]; uniform (ones) unless a subclass says otherwise."""
        return torch.ones_like(cover[:, :1])

    def embed_raw(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor | None = None) -> torch.Tensor:
        if score is None:
            score = self.score_map(cover)
        return self.write_residual_code(self.add_mirror_pattern(cover + self.embedder(cover, secrets, score)), secrets)

    def write_residual_code(self, stego: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """The last step of embed on the raw stego (B, C, N, N): nothing here; SRIS-Net writes its residual code."""
        return stego

    def add_mirror_pattern(self, stego: torch.Tensor) -> torch.Tensor:
        """Add the mirror pattern (``config.mirror == "pattern"``) to a raw stego (B, C, N, N)."""
        return (
            add_template(stego, self.config.codes.mirror.pattern_amplitude)
            if self.config.codes.mirror.decision == "pattern"
            else stego
        )

    def unmirror(self, stego: torch.Tensor) -> torch.Tensor:
        """Un-mirror the images of a batch that hold the mirrored pattern (identity without the pattern)."""
        return unmirror(stego) if self.config.codes.mirror.decision == "pattern" else stego

    def reveal_raw(self, stego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.reveal_aligned(self.unmirror(stego))

    def reveal_aligned(
        self, x: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reveal from a stego already un-mirrored: (secrets unclamped, flip logit or None). ``flipped``
        teacher-forces the legacy flip head of the first checkpoints."""
        return self.revealer(x) if flipped is None else self.revealer(x, flipped)

    def embed(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        return self.embed_raw(cover, secrets).clamp(0, 1)

    def detect(self, images: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B,) how strongly each image carries this model's mark: SRIS-Net with the thumbnail code
        reads it from the code's pilot; other models have no mark to read."""
        raise ValueError("detection reads the thumbnail code's pilot: this model has no thumbnail code")

    @property
    def detect_threshold(self) -> float | None:
        """The score from which ``detect`` calls an image marked, as calibrated for these weights and written in
        the checkpoint's metadata (``meta["detection"]["threshold"]``); None when it was never calibrated."""
        value = (getattr(self, "checkpoint_meta", None) or {}).get("detection", {}).get("threshold")
        return None if value is None else float(value)

    def restore(self, stego: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """What reveal does to a stego before its network (outside the exported graph): nothing here; SRIS-Net with
        ``config.register`` moves a shifted or mirrored stego back into register (skipped when ``aligned``: the
        caller knows the stego sits where it was embedded) and with ``config.deblur`` undoes a blur it detects."""
        return stego

    def refresh_restore(self) -> None:
        """Forget what ``restore`` measured from the weights (call after they changed)."""

    def reveal_core(self, stego: torch.Tensor, oriented: bool = False) -> torch.Tensor:
        """Reveal without ``restore``: the graph the engines export. ``oriented``: the stego is known to be in its
        embedded orientation (``restore`` registered it, or the caller embedded it), so the mirror test is skipped."""
        return (self.reveal_aligned(stego) if oriented else self.reveal_raw(stego))[0].clamp(0, 1)

    def reveal(self, stego: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """(B, C, N, N) -> secrets (B, K*C, N, N) in [0, 1]; ``aligned`` as in ``restore``. A model that registers
        knows the orientation once ``restore`` ran, so its graph does not test the mirror again."""
        registered = self.config.codes.register.enabled or aligned
        return self.reveal_core(self.restore(stego, aligned), oriented=registered)

    def reveal_and_detect(
        self, stego: torch.Tensor, threshold: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, N, N) -> (secrets (B, K*C, N, N), mark scores (B,)): ``reveal`` and ``detect`` (SRIS-Net with
        registration does both with one search)."""
        return self.reveal(stego), self.detect(stego, threshold)
