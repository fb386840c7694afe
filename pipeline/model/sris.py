"""SRIS-Net: embed (generator) and reveal paths built from LPFDD, GLEM, DMSubNet and the dual-task discriminator.

Data flow of ``embed`` (N = image size, s = stem stride, w = width, K secrets, C channels):

    cover (B, C, N, N) -> score map (B, 1, N, N) from the discriminator's score head
    cover  -> unshuffle(s) -> conv -> f_c (B, w, N/s, N/s) -> LPFDD -> bands_c[0..L]
    secrets (B, K*C, N, N) -> unshuffle(s) -> conv -> f_s -> LPFDD -> bands_s[0..L]
    progressive embedding, lowest band first: h = GLEM_L(band_c[L], band_s[L], score_L); then for each finer
    level l: h = GLEM_l(up(h), band_c[l], band_s[l], score_l)
    DMSubNet(h, shallow=f_c) -> conv -> shuffle(s) -> residual (B, C, N, N), scaled by the score-map gain
    stego = cover + residual + carrier code (pipeline/model/carrier.py) + mirror-sync pattern (sync.py)
    with ``config.fine_gain``: the stego's free checkerboard coefficients replaced by the fine code (fine.py)

``reveal`` mirrors it: a flip head un-mirrors a horizontally flipped stego, the stego's shallow features are
decomposed by LPFDD, the secret-feature bands are predicted progressively from the lowest band up and put back
together by the exact pyramid inverse, and DMSubNet refines them into the K secrets: a correction added to the
carrier's estimate (which the deep path also sees as input).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model import fine
from pipeline.model.carrier import BASE_BLOCK, DETAIL_BLOCK, CarrierReader, CarrierWriter
from pipeline.model.config import ModelConfig
from pipeline.model.deblur import Deblur
from pipeline.model.discriminator import LightScore, texture_target
from pipeline.model.dmsubnet import DMSubNet
from pipeline.model.folded import fold, unfold, upsample_folded
from pipeline.model.glem import GLEM
from pipeline.model.hiding import HidingModel
from pipeline.model.pyramid import LaplacianPyramid, PlainDownsampling
from pipeline.model.sync import template, unmirror


def _pyramid(cfg: ModelConfig) -> nn.Module:
    return LaplacianPyramid(cfg.levels) if cfg.lpfdd else PlainDownsampling(cfg.levels)


class FlipHead(nn.Module):
    """(B, C, H, W) -> (B,) logit that the image was mirrored left-right after embedding.

    A local reveal net cannot undo a mirror (the hidden signal sits at the mirrored position), so reveal asks this
    head first and un-mirrors by a soft blend ``p * flip(x) + (1 - p) * x``: exportable, no control flow, and
    trained end to end with the secret loss (plus a BCE on the flip label).
    """

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.fc = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x - 0.5).mean(dim=(2, 3))).squeeze(1)


class Embedder(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N), score (B, 1, N, N)) -> residual (B, C, N, N)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s, c, w, lw = cfg.stem_stride, cfg.channels, cfg.width, cfg.level_widths
        self.cfg = cfg
        self.stem_cover = nn.Conv2d(c * s * s, w, 3, padding=1)
        self.stem_secret = nn.Conv2d(cfg.num_secrets * c * s * s, w, 3, padding=1)
        self.pyramid = _pyramid(cfg)
        L = cfg.levels
        glems = [GLEM(2 * w + 1, lw[L], cfg.dilations, cfg.glem_global)]
        glems += [GLEM(lw[lv] + 2 * w + 1, lw[lv], cfg.dilations, cfg.glem_global) for lv in reversed(range(L))]
        self.glems = nn.ModuleList(glems)  # lowest level first
        self.ups = nn.ModuleList(nn.Conv2d(lw[lv + 1], lw[lv], 1) for lv in reversed(range(L)))
        self.to_dms = nn.Conv2d(lw[0], cfg.dms_widths[0], 1)
        self.shallow = nn.Conv2d(w, cfg.dms_widths[0], 1)
        self.dms = DMSubNet(cfg.dms_widths, cfg.dms_blocks, cfg.dilations, cfg.sfm)
        self.head = nn.Conv2d(cfg.dms_widths[0], c * s * s, 3, padding=1)
        # Small: the stego starts near the cover. With the carrier, 10x smaller again: at 1e-2 the untrained deep
        # residual was noise of the carrier code's own size, and the first steps fought it instead of learning.
        nn.init.normal_(self.head.weight, std=1e-3 if cfg.carrier else 1e-2)
        nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()
        self.carrier = CarrierWriter(c, cfg.num_secrets, cfg.carrier_amplitude, cfg.base_tile) if cfg.carrier else None

    def deep(self, cover_f: torch.Tensor, secrets_f: torch.Tensor, score_f: torch.Tensor) -> torch.Tensor:
        """The deep path on folded inputs: cover and secrets folded by s and shifted by -0.5, (B, C*s*s, N/s, N/s) and
        (B, K*C*s*s, N/s, N/s), the score map averaged over s x s blocks (B, 1, N/s, N/s) -> the residual before the
        score-map gain, folded: (B, C*s*s, N/s, N/s)."""
        f_c = self.act(self.stem_cover(cover_f))
        f_s = self.act(self.stem_secret(secrets_f))
        bands_c = self.pyramid.decompose(f_c)
        bands_s = self.pyramid.decompose(f_s)
        scores = [score_f]
        for _ in range(self.cfg.levels):
            scores.append(self.pyramid.down(scores[-1]))
        L = self.cfg.levels
        h = self.glems[0](torch.cat([bands_c[L], bands_s[L], scores[L]], dim=1))
        for i, lv in enumerate(reversed(range(L))):
            up = F.interpolate(h, size=bands_c[lv].shape[-2:], mode="bilinear", align_corners=False)
            h = self.glems[i + 1](torch.cat([self.ups[i](up), bands_c[lv], bands_s[lv], scores[lv]], dim=1))
        d = self.dms(self.to_dms(h), shallow=self.shallow(f_c))
        return self.head(d)

    def gain(self, score: torch.Tensor) -> torch.Tensor:
        """Embedding gain from the score map (any shape): ``score_floor`` where it is 0, 1 where it is 1."""
        return self.cfg.score_floor + (1 - self.cfg.score_floor) * score

    def forward(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        s = self.cfg.stem_stride
        sc = F.avg_pool2d(score, s) if s > 1 else score
        residual = unfold(self.deep(fold(cover - 0.5, s), fold(secrets - 0.5, s), sc), s)
        if self.carrier is None:
            return residual * self.gain(score)
        # The carrier's code is not scaled by the score map: its reader expects the exact coefficient.
        return residual * self.gain(score) + self.carrier(cover, secrets, self.carrier_weight(cover))

    def carrier_weight(self, cover: torch.Tensor) -> torch.Tensor | None:
        """The experimental texture weighting of the carrier's code (``config.carrier_texture``), (B, 1, N, N)."""
        return texture_weight(cover, self.cfg.carrier_texture)


def texture_weight(image: torch.Tensor, a: float) -> torch.Tensor | None:
    """(B, C, N, N) -> (B, 1, N, N): ``(1 - a) + a * texture`` (smoothed over 15x15), at unit RMS per image; None
    for ``a <= 0``. Embed weights the carrier's code with it from the cover, reveal divides it out again with the same
    map computed from the stego (the code's energy barely moves the texture: the two maps agree closely, also after
    a 3x3 mean filter, as the model card measures)."""
    if a <= 0:
        return None
    t = F.avg_pool2d(texture_target(image), 15, stride=1, padding=7, count_include_pad=False)
    w = (1 - a) + a * t
    return w / w.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()


def reveal_config(cfg: ModelConfig) -> ModelConfig:
    """The revealer's own config: ``cfg`` with ``cfg.extra["reveal"]`` applied (experimental: a revealer wider or
    deeper than the embedder, e.g. ``{"width": 48, "level_widths": [48, 96, 96, 96], "dms_widths": [48, 96]}``)."""
    over = cfg.extra.get("reveal") or {}
    return replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()}) if over else cfg


class Revealer(nn.Module):
    """stego (B, C, N, N) -> (secrets (B, K*C, N, N), unclamped; flip logit (B,))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg = reveal_config(cfg)
        s, c, w, lw = cfg.stem_stride, cfg.channels, cfg.width, cfg.level_widths
        self.cfg = cfg
        self.flip = FlipHead(c) if cfg.flip_head else None
        self.carrier = CarrierReader(c, cfg.num_secrets, cfg.carrier_amplitude, cfg.base_tile) if cfg.carrier else None
        # With the carrier, the deep path sees the stego and the carrier's estimate, and adds a correction to it.
        stem_in = c * s * s * (1 + (cfg.num_secrets if cfg.carrier else 0))
        self.stem = nn.Conv2d(stem_in, w, 3, padding=1)
        self.pyramid = _pyramid(cfg)
        L = cfg.levels
        glems = [GLEM(w, lw[L], cfg.dilations, cfg.glem_global)]
        glems += [GLEM(lw[lv] + w, lw[lv], cfg.dilations, cfg.glem_global) for lv in reversed(range(L))]
        self.glems = nn.ModuleList(glems)
        self.ups = nn.ModuleList(nn.Conv2d(lw[lv + 1], lw[lv], 1) for lv in reversed(range(L)))
        # One 1x1 conv per level predicts that level's band of the secret features (lowest level first).
        self.band_heads = nn.ModuleList(nn.Conv2d(lw[lv], w, 1) for lv in reversed(range(L + 1)))
        self.to_dms = nn.Conv2d(w, cfg.dms_widths[0], 1)
        self.shallow = nn.Conv2d(w, cfg.dms_widths[0], 1)
        self.dms = DMSubNet(cfg.dms_widths, cfg.dms_blocks, cfg.dilations, cfg.sfm)
        self.head = nn.Conv2d(cfg.dms_widths[0], cfg.num_secrets * c * s * s, 3, padding=1)
        if cfg.carrier:  # start as the carrier's estimate: the correction starts near zero
            nn.init.normal_(self.head.weight, std=1e-3)
            nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()

    def unflip(
        self, stego: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Un-mirror ``stego`` (B, C, N, N) where it was mirrored; also returns the flip logit (B,).

        Training passes the true ``flipped`` mask (B,) (teacher forcing): with the head's own soft decision, an
        untrained head (p = 0.5) blends the image with its mirror, which erases left/right and stalled learning.
        At inference the head decides, hard (``logit > 0``: exportable as a comparison and a select).
        """
        if self.flip is None:
            return stego, None
        logit = self.flip(stego)
        decision = (logit > 0).to(stego.dtype) if flipped is None else flipped.to(stego.dtype)
        p = decision.reshape(-1, 1, 1, 1)
        return p * stego.flip(-1) + (1 - p) * stego, logit

    def deep(self, inp: torch.Tensor) -> torch.Tensor:
        """The deep path on the folded input (B, stem_in, N/s, N/s) (the stego folded by s and shifted by -0.5, and
        with the carrier its estimate, folded the same way) -> the folded correction (B, K*C*s*s, N/s, N/s)."""
        L = self.cfg.levels
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
        s = self.cfg.stem_stride
        x, flip_logit = self.unflip(stego, flipped)
        inp = fold(x - 0.5, s)
        base = 0.5
        if self.carrier is not None:
            base = self.carrier(x, texture_weight(x, self.cfg.carrier_texture))
            inp = torch.cat([inp, fold(base - 0.5, s)], dim=1)
        return unfold(self.deep(inp), s) + base, flip_logit


class SRISNet(HidingModel):
    """SRIS-Net: ``embed(cover, secrets) -> stego`` and ``reveal(stego) -> secrets`` on [0, 1] float tensors.

    Shapes: cover (B, C, N, N), secrets (B, K*C, N, N), N a multiple of ``config.multiple``.
    Training uses ``embed_raw`` / ``reveal_raw`` (unclamped outputs, flip logit); the public methods clamp.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.embedder = Embedder(cfg)
        self.revealer = Revealer(cfg)
        self.light_score = LightScore(cfg.channels) if cfg.light_score and cfg.score_map else None
        self._deblur: Deblur | None = None  # made on first use (plain attribute: no weights of its own)

    def score_map(self, cover: torch.Tensor) -> torch.Tensor:
        if not self.config.score_map:
            return torch.ones_like(cover[:, :1])
        if self.light_score is not None:
            return self.light_score.score_map(cover)
        return self.discriminator.score_map(cover)

    # ---------------------------------------------------------------------------------------- inference graph
    # ``embed`` and ``reveal`` compute what ``embed_raw(...).clamp(0, 1)`` and ``reveal_raw(...)[0].clamp(0, 1)``
    # compute (the tests hold them equal to float rounding), rearranged for the engines: everything between the input
    # fold and the output unfold stays folded by the stem stride. Exported, the straightforward graph spent as much
    # time as its deep path on full-resolution passes around it (upsampling the score map and the carrier's
    # estimate, folding the same image three times, adding five full-size tensors): on the 2-vCPU CPU those passes,
    # not the convolutions, bounded the batch job.

    def _lean(self) -> bool:
        cfg = self.config
        return (
            cfg.carrier
            and cfg.flip_sync
            and not cfg.flip_head
            and cfg.stem_stride == DETAIL_BLOCK
            and cfg.carrier_texture <= 0
        )

    def _score_folded(self, cover: torch.Tensor, cover_c: torch.Tensor) -> torch.Tensor:
        """``fold(score_map(cover), s)``: (B, s*s, N/s, N/s); ``cover_c`` is the cover folded by s, minus 0.5."""
        # Both score heads give logits at N/4 (= N/s here); the light one reads the cover as embed folds it.
        if self.light_score is not None:
            logits = self.light_score(cover_c)
        else:
            logits = self.discriminator.score(self.discriminator.features(cover))
        return torch.sigmoid(upsample_folded(logits, self.config.stem_stride))

    def embed(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        if not self._lean():
            return super().embed(cover, secrets)
        e, s, c = self.embedder, self.config.stem_stride, self.config.channels
        b, _, h, w = cover.shape
        cover_f = fold(cover, s)
        cover_c, secrets_c = cover_f - 0.5, fold(secrets, s) - 0.5
        if self.config.score_map:
            score_f = self._score_folded(cover, cover_c)
            residual = e.deep(cover_c, secrets_c, score_f.mean(dim=1, keepdim=True))
            # The gain of each pixel, repeated for its C channels (a 4-D multiply: a 5-D view made OpenVINO
            # reorder the residual out of its blocked layout and back, 2 ms per image).
            residual = residual * e.gain(score_f).repeat(1, c, 1, 1)
        else:
            residual = e.deep(cover_c, secrets_c, cover_f.new_ones(b, 1, h // s, w // s))
        stego_f = cover_f + residual + e.carrier.detail(cover_f, secrets)
        if not self.config.mirror_pilot:
            stego_f = stego_f + fold(template(h, w, cover), s).repeat(1, c, 1, 1) * (self.config.sync_amplitude / 255)
        stego = unfold(stego_f, s) + unfold(e.carrier.base(cover, secrets), BASE_BLOCK)
        return self.finish(stego, secrets).clamp(0, 1)

    def _reveal_lean(self, x: torch.Tensor) -> torch.Tensor:
        """``revealer(x)[0]`` of an un-mirrored stego, rearranged as ``embed`` is (unclamped)."""
        r, s = self.revealer, self.config.stem_stride
        x_f = fold(x, s)
        estimate_f = upsample_folded(r.carrier.thumbnails(x, x_f), s)  # == fold(r.carrier(x))
        correction_f = r.deep(torch.cat([x_f - 0.5, estimate_f - 0.5], dim=1))
        return unfold(correction_f + estimate_f, s)

    def add_sync(self, stego: torch.Tensor) -> torch.Tensor:
        return stego if self.config.mirror_pilot else super().add_sync(stego)

    def unmirror(self, stego: torch.Tensor) -> torch.Tensor:
        if self.config.mirror_pilot:  # the config refuses it without the carrier
            return unmirror(stego, self.revealer.carrier.mirrored(stego))
        return super().unmirror(stego)

    def restore(self, stego: torch.Tensor) -> torch.Tensor:
        if not self.config.deblur:  # the config refuses deblur without the carrier
            return stego
        if self._deblur is None:
            k, fine_code = self.config.num_secrets, self.config.fine_gain > 0
            self._deblur = Deblur(self.embedder.carrier, self.revealer.carrier, k, fine_code)
        return self._deblur(stego)

    def refresh_restore(self) -> None:
        self._deblur = None

    def reveal_core(self, stego: torch.Tensor) -> torch.Tensor:
        if not self._lean():
            return super().reveal_core(stego)
        x = self.unmirror(stego)
        if self.config.fine_gain <= 0:
            return self._reveal_lean(x).clamp(0, 1)
        stripped, y = fine.strip(x, self.config.num_secrets)
        return self._add_fine(self._reveal_lean(stripped), y).clamp(0, 1)

    # ------------------------------------------------------------------------------------------------ fine code
    def finish(self, stego: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """With ``config.fine_gain``: replace the raw stego's free checkerboard coefficients by the fine code of what
        reveal reads from the rest (``pipeline/model/fine.py``). No gradient flows through that reading: it is the
        target the code corrects, not something embed should learn to move."""
        gain = self.config.fine_gain
        if gain <= 0:
            return stego
        k = self.config.num_secrets
        stripped, _ = fine.strip(stego, k)
        with torch.no_grad():
            read = self._reveal_lean(stripped) if self._lean() else super().reveal_aligned(stripped)[0]
        c = self.config.channels
        return fine.write(stripped, secrets[:, :c], read[:, :c].clamp(0, 1), gain, k)

    def _add_fine(self, secrets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Add the fine code's correction, read from its coordinates ``y`` (``fine.strip``), to the first secret."""
        c = self.config.channels
        first = secrets[:, :c] + fine.read(y, self.config.fine_gain, self.config.num_secrets)
        return torch.cat([first, secrets[:, c:]], dim=1) if secrets.shape[1] > c else first

    def reveal_aligned(
        self, x: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.config.fine_gain <= 0:
            return super().reveal_aligned(x, flipped)
        stripped, y = fine.strip(x, self.config.num_secrets)
        secrets, logit = super().reveal_aligned(stripped, flipped)
        return self._add_fine(secrets, y), logit
