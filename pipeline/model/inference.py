"""The hiding model's inference graph: what the engines export, rearranged to stay folded between one fold and one
unfold (SRIS-Net with the thumbnail code on the stem's 4x4 fold: ``HidingModel.uses_folded_graph``).

``embed_folded`` and ``reveal_folded`` compute what ``embed_raw(...).clamp(0, 1)`` and ``reveal_raw(...)[0].clamp(0,
1)`` compute (``tests/test_inference_graph.py`` holds them equal to float rounding), with every tensor between the
input fold and the output unfold folded by the stem stride (4, the thumbnail code's detail block). Exported, the
straightforward graph spent about as much time on full-resolution passes around the learned path (upsampling the
score map and the code's reading, folding one image three times, adding five full-size tensors) as on its
convolutions; on a CPU those passes bound the batch job.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.codes.mirror import template
from pipeline.model.codes.thumbnail import BASE_BLOCK
from pipeline.model.folded import fold, unfold, upsample_folded

# ``model`` below is a ``pipeline.model.hiding.HidingModel`` (typed as a module: hiding.py imports this one).


def _score_folded(model: nn.Module, cover: torch.Tensor, cover_c: torch.Tensor) -> torch.Tensor:
    """``fold(score_map(cover), s)``: (B, s*s, N/s, N/s); ``cover_c`` is the cover folded by s, minus 0.5."""
    # Both score heads give logits at N/4 (= N/s here); the light one reads the cover as embed folds it.
    if model.light_score is not None:
        logits = model.light_score(cover_c)
    else:
        logits = model.discriminator.score(model.discriminator.features(cover))
    return torch.sigmoid(upsample_folded(logits, model.config.network.stem_stride))


def embed_folded(model: nn.Module, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
    """(cover (B, C, N, N), secrets (B, K*C, N, N)) -> stego (B, C, N, N), clamped to [0, 1]."""
    cfg, e, writer = model.config, model.embedder, model.thumbnail.writer
    s, c = cfg.network.stem_stride, cfg.channels
    b, _, h, w = cover.shape
    cover_f = fold(cover, s)
    cover_c, secrets_c = cover_f - 0.5, fold(secrets, s) - 0.5
    if cfg.ablation.score_map:
        score_f = _score_folded(model, cover, cover_c)
        learned = e.learned_residual(cover_c, secrets_c, score_f.mean(dim=1, keepdim=True))
        # The gain of each pixel, repeated for its C channels (a 4-D multiply: a 5-D view made OpenVINO reorder the
        # residual out of its blocked layout and back).
        learned = learned * e.gain(score_f).repeat(1, c, 1, 1)
    else:
        learned = e.learned_residual(cover_c, secrets_c, cover_f.new_ones(b, 1, h // s, w // s))
    under_f = cover_f + learned if cfg.codes.thumbnail.code_last else cover_f  # what the code's cancellation removes
    stego_f = cover_f + learned + writer.detail(under_f, secrets)
    mirror = model.mirror
    if mirror.decision == "pattern":
        stego_f = stego_f + fold(template(h, w, cover), s).repeat(1, c, 1, 1) * (mirror.pattern_amplitude / 255)
    under = unfold(under_f, s) if cfg.codes.thumbnail.code_last else cover
    stego = unfold(stego_f, s) + unfold(writer.base(under, secrets), BASE_BLOCK)
    return model.write_residual_code(stego, secrets).clamp(0, 1)


def reveal_without_residual(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``reveal_network(x)[0]`` of an un-mirrored stego (B, C, N, N) -> secrets (B, K*C, N, N), unclamped."""
    r, s = model.revealer, model.config.network.stem_stride
    x_f = fold(x, s)
    reading_f = upsample_folded(model.thumbnail.reader.thumbnails(x, x_f), s)  # == fold(thumbnail.reader(x))
    correction_f = r.learned_correction(torch.cat([x_f - 0.5, reading_f - 0.5], dim=1))
    return unfold(correction_f + reading_f, s)


def reveal_folded(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An un-mirrored stego (B, C, N, N) -> secrets (B, K*C, N, N), clamped to [0, 1], the residual code added."""
    code = model.residual_code
    if code is None:
        return reveal_without_residual(model, x).clamp(0, 1)
    stripped, y = code.strip(x)
    return code.add(reveal_without_residual(model, stripped), y).clamp(0, 1)
