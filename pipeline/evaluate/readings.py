"""What each part of reveal carries: three readings of one stego, from the analytic code alone to the full reveal.

thumbnail code      the thumbnail code reader's own reading: the secret's 8x8 and 4x4 block means, upsampled
+ learned path      what the reveal network makes of the stego and that reading (no residual code)
+ residual code     the full reveal (``model.reveal``): the residual code added where it survived
"""

from __future__ import annotations

import torch

from pipeline.model.codes import residual
from pipeline.model.inference import reveal_without_residual

READINGS = ("thumbnail code", "+ learned path", "+ residual code")


def part_readings(model: torch.nn.Module, stego: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three readings (``READINGS``) of stegos (B, C, N, N) in [0, 1] by a coded SRIS-Net: each (B, K*C, N, N),
    clamped to [0, 1]. The stego is restored (deblurred, moved back into register) and un-mirrored first, as
    reveal does."""
    if not getattr(model.config, "coded", False):
        raise ValueError("the readings need a model with the thumbnail code")
    x = model.unmirror(model.restore(stego))
    stripped, _ = residual.strip(x, model.config.code_layout)
    return {
        READINGS[0]: model.thumbnail.reader(stripped).clamp(0, 1),
        READINGS[1]: reveal_without_residual(model, stripped).clamp(0, 1),
        READINGS[2]: model.reveal(stego),
    }
