"""SRIS-Net's two learned paths, built from LPFDD, GLEM and DMSubNet: the paper's network and nothing of ours.

Data flow of the embed path (N = image size, s = stem stride, w = width, K secrets, C channels):

    cover  -> fold(s) -> conv -> f_c (B, w, N/s, N/s) -> LPFDD -> bands_c[0..L]
    secrets (B, K*C, N, N) -> fold(s) -> conv -> f_s -> LPFDD -> bands_s[0..L]
    progressive embedding, lowest band first: h = GLEM_L(band_c[L], band_s[L], score_L); then for each finer
    level l: h = GLEM_l(up(h), band_c[l], band_s[l], score_l)
    DMSubNet(h, shallow=f_c) -> conv -> unfold(s) -> residual (B, C, N, N), scaled by the score-map gain

The reveal path mirrors it: LPFDD on the stego's shallow features, the secret-feature bands predicted progressively
from the lowest band up and put back together by the exact pyramid inverse, DMSubNet refining them into the K
secrets. A *guided* revealer also reads a first estimate of the secrets beside the stego (our thumbnail code's
reading) and outputs a correction to it.

Where the score map comes from (the dual-task discriminator, ``discriminator.py``), what is added to the stego
beside the learned residual (our analytic codes, ``pipeline/model/codes/``) and how the two are put together
(``pipeline/model/hiding.py``, built by ``pipeline/model/compose.py``) is not decided here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.folded import fold, unfold
from pipeline.model.sris.dmsubnet import DMSubNet
from pipeline.model.sris.glem import GLEM
from pipeline.model.sris.lpfdd import LaplacianPyramid, PlainDownsampling

if TYPE_CHECKING:
    from pipeline.model.config import ModelConfig


def _pyramid(cfg: ModelConfig) -> nn.Module:
    return LaplacianPyramid(cfg.network.levels) if cfg.ablation.lpfdd else PlainDownsampling(cfg.network.levels)


class SRISEmbedder(nn.Module):
    """(cover (B, C, N, N), secrets (B, K*C, N, N), score (B, 1, N, N)) -> learned residual (B, C, N, N), scaled by
    the score-map gain.

    ``quiet_start``: the output head starts 10x smaller again (an analytic code carries the secret at first, and an
    untrained learned residual the size of the code's own signal made the first steps fight it).
    """

    def __init__(self, cfg: ModelConfig, quiet_start: bool = False) -> None:
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
        # Small: the stego starts near the cover.
        nn.init.normal_(self.head.weight, std=1e-3 if quiet_start else 1e-2)
        nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()

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
        return learned * self.gain(score)


class SRISRevealer(nn.Module):
    """stego (B, C, N, N) [, guide (B, K*C, N, N)] -> secrets (B, K*C, N, N), unclamped.

    ``guided``: the path also reads ``guide``, a first estimate of the secrets (our thumbnail code's reading), and
    adds its output to it as a correction (its head starts near zero, so it starts as the guide); unguided, it adds
    its output to mid-grey.
    """

    def __init__(self, cfg: ModelConfig, guided: bool = False) -> None:
        super().__init__()
        s, c, w, lw = cfg.network.stem_stride, cfg.channels, cfg.network.width, cfg.network.level_widths
        self.cfg = cfg
        self.guided = guided
        stem_in = c * s * s * (1 + (cfg.num_secrets if guided else 0))
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
        if guided:  # start as the guide: the correction starts near zero
            nn.init.normal_(self.head.weight, std=1e-3)
            nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()

    def learned_correction(self, inp: torch.Tensor) -> torch.Tensor:
        """The learned path on the folded input (B, stem_in, N/s, N/s) (the stego folded by s and shifted by -0.5,
        and when guided the guide, folded the same way) -> the folded output (B, K*C*s*s, N/s, N/s): the secrets, or
        when guided the correction to the guide."""
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

    def forward(self, stego: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        if (guide is not None) != self.guided:
            raise ValueError("a guided revealer reads a guide beside the stego, an unguided one none")
        s = self.cfg.network.stem_stride
        inp = fold(stego - 0.5, s)
        base: torch.Tensor | float = 0.5
        if guide is not None:
            base = guide
            inp = torch.cat([inp, fold(guide - 0.5, s)], dim=1)
        return unfold(self.learned_correction(inp), s) + base
