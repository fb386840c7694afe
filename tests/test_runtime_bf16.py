"""OpenVINO bf16 against torch fp32 with the trained model on natural photos: stego and recovered-secret PSNR agree
within 0.2 dB.

bf16 is judged on a trained model and real photos, not on random inputs: what matters is the quality a user gets.
It needs the shipped model (``pipeline/weights/sris_fast.pt``) and a CPU on which OpenVINO really runs bf16
(AVX512_BF16 or AMX); elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.core.metrics import psnr, to_255
from pipeline.model.checkpoint import default_checkpoint_path
from pipeline.runtime import load_engine
from pipeline.runtime.probe import probe_backend

SIZE = 256
PSNR_TOL_DB = 0.2
OPENVINO = probe_backend("openvino")

pytestmark = [
    pytest.mark.skipif(
        not default_checkpoint_path().is_file(),
        reason=f"the shipped model {default_checkpoint_path()} does not exist yet (still training): bf16 quality is "
        "judged on the trained model",
    ),
    pytest.mark.skipif(not OPENVINO.available, reason=f"OpenVINO unusable: {OPENVINO.reason}"),
    pytest.mark.skipif(
        OPENVINO.available and "bf16" not in OPENVINO.precisions,
        reason=f"this CPU cannot run OpenVINO bf16 ({OPENVINO.reason})",
    ),
    pytest.mark.slow,
]


def natural_photos() -> np.ndarray:
    """astronaut, coffee, chelsea, rocket from scikit-image: centre square, resized to SIZE; (4, 3, N, N) in [0, 1]."""
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        s = min(h, w)
        crop = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append(np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BICUBIC)))
    return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32) / 255


def quality(engine, covers: np.ndarray, secrets: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (dB, 8-bit) of stego vs cover and of the secret recovered from the saved (rounded) stego."""
    stego8 = to_255(torch.from_numpy(engine.embed(covers, secrets)))
    recovered8 = to_255(torch.from_numpy(engine.reveal((stego8 / 255).numpy().astype(np.float32))))
    cover8, secret8 = to_255(torch.from_numpy(covers)), to_255(torch.from_numpy(secrets))
    return float(psnr(stego8, cover8).mean()), float(psnr(recovered8, secret8).mean())


def test_openvino_bf16_quality_matches_torch_on_natural_photos(tmp_path: Path) -> None:
    reference = load_engine("torch", None, SIZE)
    covers = natural_photos()
    k = reference.info.num_secrets
    secrets = np.concatenate([np.roll(covers, i + 1, axis=0) for i in range(k)], axis=1)  # another photo each
    bf16 = load_engine("openvino", None, SIZE, precision="bf16", engines_dir=str(tmp_path / "engines"))
    assert bf16.info.precision == "bf16"
    cover_ref, secret_ref = quality(reference, covers, secrets)
    cover_bf16, secret_bf16 = quality(bf16, covers, secrets)
    print(
        f"torch fp32: stego {cover_ref:.2f} dB, secret {secret_ref:.2f} dB; "
        f"openvino bf16: stego {cover_bf16:.2f} dB, secret {secret_bf16:.2f} dB"
    )
    assert abs(cover_bf16 - cover_ref) <= PSNR_TOL_DB
    assert abs(secret_bf16 - secret_ref) <= PSNR_TOL_DB
