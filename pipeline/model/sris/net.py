"""SRIS-Net: the embed (generator) and reveal paths built from LPFDD, GLEM, DMSubNet and the dual-task discriminator.

Data flow of ``embed`` (N = image size, s = stem stride, w = width, K secrets, C channels):

    cover (B, C, N, N) -> score map (B, 1, N, N) from the discriminator's score head (or its light distillate)
    cover  -> fold(s) -> conv -> f_c (B, w, N/s, N/s) -> LPFDD -> bands_c[0..L]
    secrets (B, K*C, N, N) -> fold(s) -> conv -> f_s -> LPFDD -> bands_s[0..L]
    progressive embedding, lowest band first: h = GLEM_L(band_c[L], band_s[L], score_L); then for each finer
    level l: h = GLEM_l(up(h), band_c[l], band_s[l], score_l)
    DMSubNet(h, shallow=f_c) -> conv -> unfold(s) -> learned residual (B, C, N, N), scaled by the score-map gain
    stego = cover + learned residual + thumbnail code [+ mirror pattern], then the residual code; the thumbnail code
    replaces the coefficients it writes, of the cover (or with ``code_last`` of the cover plus the learned residual)

``reveal`` mirrors it: un-mirror, LPFDD on the stego's shallow features, the secret-feature bands predicted
progressively from the lowest band up and put back together by the exact pyramid inverse, DMSubNet refining them
into the K secrets. With the thumbnail code, that is a correction added to the code's own reading of the secrets
(which the learned path also sees). The analytic codes live in ``pipeline/model/codes/``; the engines run the same
computation rearranged on folded tensors (``pipeline/model/sris/inference.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.codes import residual
from pipeline.model.codes.deblur import Deblur
from pipeline.model.codes.mirror import unmirror
from pipeline.model.codes.register import Alignment, Registration
from pipeline.model.codes.thumbnail import DETAIL_BLOCK, ThumbnailReader, ThumbnailWriter
from pipeline.model.config import ModelConfig
from pipeline.model.folded import fold, unfold
from pipeline.model.hiding import HidingModel
from pipeline.model.legacy import FlipHead, reveal_config, texture_weight
from pipeline.model.sris import inference
from pipeline.model.sris.discriminator import LightScore
from pipeline.model.sris.dmsubnet import DMSubNet
from pipeline.model.sris.glem import GLEM
from pipeline.model.sris.lpfdd import LaplacianPyramid, PlainDownsampling


def _pyramid(cfg: ModelConfig) -> nn.Module:
    return LaplacianPyramid(cfg.network.levels) if cfg.ablation.lpfdd else PlainDownsampling(cfg.network.levels)


class Embedder(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N), score (B, 1, N, N)) -> residual (B, C, N, N)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s, c, w, lw = cfg.network.stem_stride, cfg.channels, cfg.network.width, cfg.network.level_widths
        self.cfg = cfg
        self.stem_cover = nn.Conv2d(c * s * s, w, 3, padding=1)
        self.stem_secret = nn.Conv2d(cfg.num_secrets * c * s * s, w, 3, padding=1)
        self.pyramid = _pyramid(cfg)
        L = cfg.network.levels
        glems = [GLEM(2 * w + 1, lw[L], cfg.network.dilations, cfg.ablation.glem_global)]
        glems += [
            GLEM(lw[lv] + 2 * w + 1, lw[lv], cfg.network.dilations, cfg.ablation.glem_global)
            for lv in reversed(range(L))
        ]
        self.glems = nn.ModuleList(glems)  # lowest level first
        self.ups = nn.ModuleList(nn.Conv2d(lw[lv + 1], lw[lv], 1) for lv in reversed(range(L)))
        self.to_dms = nn.Conv2d(lw[0], cfg.network.dms_widths[0], 1)
        self.shallow = nn.Conv2d(w, cfg.network.dms_widths[0], 1)
        self.dms = DMSubNet(cfg.network.dms_widths, cfg.network.dms_blocks, cfg.network.dilations, cfg.ablation.sfm)
        self.head = nn.Conv2d(cfg.network.dms_widths[0], c * s * s, 3, padding=1)
        # Small: the stego starts near the cover. With the thumbnail code, 10x smaller again: an untrained learned
        # residual the size of the code's own signal made the first steps fight it instead of learning.
        nn.init.normal_(self.head.weight, std=1e-3 if cfg.coded else 1e-2)
        nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()
        self.thumbnail = (
            ThumbnailWriter(
                c, cfg.num_secrets, cfg.codes.thumbnail.amplitude, cfg.codes.thumbnail.base_tile, cfg.code_layout
            )
            if cfg.coded
            else None
        )

    def learned_residual(self, cover_f: torch.Tensor, secrets_f: torch.Tensor, score_f: torch.Tensor) -> torch.Tensor:
        """The learned path on folded inputs: cover and secrets folded by s and shifted by -0.5, (B, C*s*s, N/s, N/s)
        and (B, K*C*s*s, N/s, N/s), the score map averaged over s x s blocks (B, 1, N/s, N/s) -> the residual before
        the score-map gain, folded: (B, C*s*s, N/s, N/s)."""
        f_c = self.act(self.stem_cover(cover_f))
        f_s = self.act(self.stem_secret(secrets_f))
        bands_c = self.pyramid.decompose(f_c)
        bands_s = self.pyramid.decompose(f_s)
        scores = [score_f]
        for _ in range(self.cfg.network.levels):
            scores.append(self.pyramid.down(scores[-1]))
        L = self.cfg.network.levels
        h = self.glems[0](torch.cat([bands_c[L], bands_s[L], scores[L]], dim=1))
        for i, lv in enumerate(reversed(range(L))):
            up = F.interpolate(h, size=bands_c[lv].shape[-2:], mode="bilinear", align_corners=False)
            h = self.glems[i + 1](torch.cat([self.ups[i](up), bands_c[lv], bands_s[lv], scores[lv]], dim=1))
        d = self.dms(self.to_dms(h), shallow=self.shallow(f_c))
        return self.head(d)

    def gain(self, score: torch.Tensor) -> torch.Tensor:
        """Embedding gain from the score map (any shape): ``score_floor`` where it is 0, 1 where it is 1."""
        return self.cfg.network.score_floor + (1 - self.cfg.network.score_floor) * score

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        s = self.cfg.network.stem_stride
        sc = F.avg_pool2d(score, s) if s > 1 else score
        learned = unfold(self.learned_residual(fold(cover - 0.5, s), fold(secrets - 0.5, s), sc), s)
        if self.thumbnail is None:
            return learned * self.gain(score)
        # The thumbnail code is not scaled by the score map: its reader expects the exact coefficient.
        weight = texture_weight(cover, self.cfg.legacy.texture_weighting)
        learned = learned * self.gain(score)
        under = cover + learned if self.cfg.codes.thumbnail.code_last else cover  # what the code's cancellation removes
        return learned + self.thumbnail(under, secrets, weight)


class Revealer(nn.Module):
    """stego (B, C, N, N) -> (secrets (B, K*C, N, N), unclamped; flip logit (B,) of a legacy flip head, or None)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg = reveal_config(cfg)
        s, c, w, lw = cfg.network.stem_stride, cfg.channels, cfg.network.width, cfg.network.level_widths
        self.cfg = cfg
        self.flip = FlipHead(c) if cfg.legacy.flip_head else None
        self.thumbnail = (
            ThumbnailReader(
                c, cfg.num_secrets, cfg.codes.thumbnail.amplitude, cfg.codes.thumbnail.base_tile, cfg.code_layout
            )
            if cfg.coded
            else None
        )
        # With the thumbnail code, the learned path sees the stego and the code's reading, and adds a correction.
        stem_in = c * s * s * (1 + (cfg.num_secrets if cfg.coded else 0))
        self.stem = nn.Conv2d(stem_in, w, 3, padding=1)
        self.pyramid = _pyramid(cfg)
        L = cfg.network.levels
        glems = [GLEM(w, lw[L], cfg.network.dilations, cfg.ablation.glem_global)]
        glems += [
            GLEM(lw[lv] + w, lw[lv], cfg.network.dilations, cfg.ablation.glem_global) for lv in reversed(range(L))
        ]
        self.glems = nn.ModuleList(glems)
        self.ups = nn.ModuleList(nn.Conv2d(lw[lv + 1], lw[lv], 1) for lv in reversed(range(L)))
        # One 1x1 conv per level predicts that level's band of the secret features (lowest level first).
        self.band_heads = nn.ModuleList(nn.Conv2d(lw[lv], w, 1) for lv in reversed(range(L + 1)))
        self.to_dms = nn.Conv2d(w, cfg.network.dms_widths[0], 1)
        self.shallow = nn.Conv2d(w, cfg.network.dms_widths[0], 1)
        self.dms = DMSubNet(cfg.network.dms_widths, cfg.network.dms_blocks, cfg.network.dilations, cfg.ablation.sfm)
        self.head = nn.Conv2d(cfg.network.dms_widths[0], cfg.num_secrets * c * s * s, 3, padding=1)
        if cfg.coded:  # start as the code's reading: the correction starts near zero
            nn.init.normal_(self.head.weight, std=1e-3)
            nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()

    def unflip(
        self, stego: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Un-mirror ``stego`` (B, C, N, N) by the legacy flip head, if the model has one; also returns its logit (B,).
        ``flipped`` (B,) teacher-forces the decision (training)."""
        if self.flip is None:
            return stego, None
        logit = self.flip(stego)
        decision = (logit > 0).to(stego.dtype) if flipped is None else flipped.to(stego.dtype)
        p = decision.reshape(-1, 1, 1, 1)
        return p * stego.flip(-1) + (1 - p) * stego, logit

    def learned_correction(self, inp: torch.Tensor) -> torch.Tensor:
        """The learned path on the folded input (B, stem_in, N/s, N/s) (the stego folded by s and shifted by -0.5,
        and with the thumbnail code its reading, folded the same way) -> the folded output (B, K*C*s*s, N/s, N/s):
        the secrets, or with the thumbnail code the correction to its reading."""
        L = self.cfg.network.levels
        f = self.act(self.stem(inp))
        bands = self.pyramid.decompose(f)
        h = self.glems[0](bands[L])
        preds = [self.band_heads[0](h)]
        for i, lv in enumerate(reversed(range(L))):
            up = F.interpolate(h, size=bands[lv].shape[-2:], mode="bilinear", align_corners=False)
            h = self.glems[i + 1](torch.cat([self.ups[i](up), bands[lv]], dim=1))
            preds.append(self.band_heads[i + 1](h))
        feat = self.pyramid.reconstruct(preds[::-1])
        d = self.dms(self.to_dms(feat), shallow=self.shallow(f))
        return self.head(d)

    def forward(
        self, stego: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.cfg.network.stem_stride
        x, flip_logit = self.unflip(stego, flipped)
        inp = fold(x - 0.5, s)
        base = 0.5
        if self.thumbnail is not None:
            base = self.thumbnail(x, texture_weight(x, self.cfg.legacy.texture_weighting))
            inp = torch.cat([inp, fold(base - 0.5, s)], dim=1)
        return unfold(self.learned_correction(inp), s) + base, flip_logit


class SRISNet(HidingModel):
    """SRIS-Net: ``embed(cover, secrets) -> stego`` and ``reveal(stego) -> secrets`` on [0, 1] float tensors.

    Shapes: cover (B, C, N, N), secrets (B, K*C, N, N), N a multiple of ``config.multiple``.
    Training uses ``embed_raw`` / ``reveal_raw`` (unclamped outputs, flip logit); the public methods clamp and, where
    ``uses_folded_graph``, run the folded inference graph the engines export (equal to float rounding).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.embedder = Embedder(cfg)
        self.revealer = Revealer(cfg)
        self.light_score = LightScore(cfg.channels) if cfg.network.light_score and cfg.ablation.score_map else None
        self._deblur: Deblur | None = None  # made on first use (plain attribute: no weights of its own)

    def score_map(self, cover: torch.Tensor) -> torch.Tensor:
        if not self.config.ablation.score_map:
            return torch.ones_like(cover[:, :1])
        if self.light_score is not None:
            return self.light_score.score_map(cover)
        return self.discriminator.score_map(cover)

    @property
    def uses_folded_graph(self) -> bool:
        """The folded inference graph covers this config: the thumbnail code on the stem's 4x4 fold, no legacy part."""
        cfg = self.config
        return cfg.coded and cfg.network.stem_stride == DETAIL_BLOCK and not cfg.legacy.active

    def embed(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        if not self.uses_folded_graph:
            return super().embed(cover, secrets)
        return inference.embed_folded(self, cover, secrets)

    def add_mirror_pattern(self, stego: torch.Tensor) -> torch.Tensor:
        return stego if self.config.codes.mirror.decision == "pilot" else super().add_mirror_pattern(stego)

    def unmirror(self, stego: torch.Tensor) -> torch.Tensor:
        if self.config.codes.mirror.decision == "pilot":  # the config refuses it without the thumbnail code
            return unmirror(stego, self.revealer.thumbnail.mirrored(stego))
        return super().unmirror(stego)

    def detect(self, images: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B,) how strongly each image carries this model's thumbnail code: the base
        pilot's statistic at the best grid offset and orientation (``pipeline/model/codes/register.py``), about the
        maximum of a thousand standard normals on an unmarked image. The threshold is calibrated on unmarked photos
        (``scripts/calibrate_detection.py``) and kept in the checkpoint (``detect_threshold``). With ``threshold``,
        images whose unshifted statistic reaches it skip the search (same verdicts, a fraction of the time)."""
        if not self.config.coded:
            return super().detect(images)
        return Registration(self.revealer.thumbnail).score(images, threshold)

    def restore(self, stego: torch.Tensor, aligned: bool = False, alignment: Alignment | None = None) -> torch.Tensor:
        """``HidingModel.restore``; ``alignment``: registration's result for these stegos when the caller already has
        it (``reveal_and_detect``), so the search is not run again. Registration's result decides the orientation,
        so the deblur does not look at the mirror again."""
        oriented = False
        if self.config.codes.register.enabled and not aligned:  # the config refuses both without the thumbnail code
            reg = Registration(self.revealer.thumbnail)
            stego = reg.apply(stego, alignment if alignment is not None else reg.search(stego))
            oriented = True
        if not self.config.codes.deblur.enabled:
            return stego
        if self._deblur is None:
            layout, with_residual = self.config.code_layout, self.config.codes.residual.gain > 0
            self._deblur = Deblur(self.embedder.thumbnail, self.revealer.thumbnail, layout, with_residual)
        return self._deblur(stego, oriented or aligned)

    def reveal_and_detect(
        self, stego: torch.Tensor, threshold: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, N, N) -> (secrets (B, K*C, N, N) in [0, 1], mark scores (B,)): ``reveal`` and ``detect`` with one
        registration search between them (the extract job). The scores are the search's, so ``threshold`` (as in
        ``detect``) changes no verdict and saves nothing here: registration searches every image anyway."""
        if not (self.config.coded and self.config.codes.register.enabled):
            return super().reveal_and_detect(stego, threshold)
        restored, scores = self.restore_and_detect(stego)
        return self.reveal_core(restored, oriented=True), scores

    def restore_and_detect(self, stego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, N, N) -> (the restored stego, mark scores (B,)) with one registration search (``config.register``
        on): ``restore``, and the search's maximum, which is ``detect``'s score. The compiled engines run this before
        their reveal graph."""
        found = Registration(self.revealer.thumbnail).search(stego)
        return self.restore(stego, alignment=found), found.score

    def refresh_restore(self) -> None:
        self._deblur = None

    def reveal_core(self, stego: torch.Tensor, oriented: bool = False) -> torch.Tensor:
        if not self.uses_folded_graph:
            return super().reveal_core(stego, oriented)
        return inference.reveal_folded(self, stego if oriented else self.unmirror(stego))

    # ------------------------------------------------------------------------------------------- residual code
    def write_residual_code(self, stego: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """With ``config.residual_gain``: replace the raw stego's free checkerboard coefficients by the residual code
        of what reveal reads from the rest (``pipeline/model/codes/residual.py``). No gradient flows through that
        reading: it is the target the code corrects, not something embed should learn to move."""
        gain = self.config.codes.residual.gain
        if gain <= 0:
            return stego
        layout = self.config.code_layout
        stripped, _ = residual.strip(stego, layout)
        with torch.no_grad():
            if self.uses_folded_graph:
                read = inference.reveal_without_residual(self, stripped)
            else:
                read = super().reveal_aligned(stripped)[0]
        c = self.config.channels
        return residual.write(stripped, secrets[:, :c], read[:, :c].clamp(0, 1), gain, layout)

    def add_residual_code(self, secrets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Add the residual code's correction, read from its coordinates ``y`` (``residual.strip``), to the first
        secret."""
        c = self.config.channels
        first = secrets[:, :c] + residual.read(y, self.config.codes.residual.gain, self.config.code_layout)
        return torch.cat([first, secrets[:, c:]], dim=1) if secrets.shape[1] > c else first

    def reveal_aligned(
        self, x: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.config.codes.residual.gain <= 0:
            return super().reveal_aligned(x, flipped)
        stripped, y = residual.strip(x, self.config.code_layout)
        secrets, logit = super().reveal_aligned(stripped, flipped)
        return self.add_residual_code(secrets, y), logit
