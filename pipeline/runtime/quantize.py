"""int8 OpenVINO engines: post-training quantization of the learned network's convolutions with NNCF.

Only the convolutions of the learned paths (``model.embedder``, ``model.revealer``, ``model.light_score``: layers
with trained weights) are quantized. The analytic parts of the graph stay in floating point: the thumbnail and
residual codes read pilots a few grey levels strong and divide by their gains, the pyramid and the folded upsampling
are exact linear maps, and 8-bit steps there would move every secret the codes carry. The ONNX graph names each
node's torch module (``namespace`` metadata), which is how the learned layers are found.

Calibration uses images the package ships or makes, never the user's: crops of the sample shards' photos
(``pipeline/samples/shards``) at a few scales and both orientations, each hiding the next. Embed is calibrated on
(cover, secrets) pairs; reveal on the 8-bit stegos the fp32 model makes of them, clean and after the attacks the
quality bar measures (mean 3x3, Gaussian, sharpen, noise, JPEG), so that its activation ranges cover what a receiver
reads.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Module paths (torch's ``namespace`` in the exported ONNX) of the learned layers; nothing else is quantized.
LEARNED = ("model.embedder.", "model.revealer.", "model.light_score.")
CONV_CLASS = "torch.nn.modules.conv.Conv2d"
SCALES = (1.0, 0.8, 0.62)  # crop side over the photo's short side
CALIBRATION_SEED = 0x1A8


def sample_photos() -> list[np.ndarray]:
    """The RGB photos (H, W, 3) uint8 of the package's sample shards."""
    from pipeline.io.decode import decode_image
    from pipeline.io.tar_reader import iter_image_members

    source = str(resources.files("pipeline") / "samples" / "shards")
    return [decode_image(data).rgb for _, data in iter_image_members(source)]


def calibration_covers(size: int, photos: list[np.ndarray] | None = None) -> np.ndarray:
    """(n, 3, N, N) float32 in [0, 1]: square crops of ``photos`` (default: the sample shards') at ``SCALES`` of their
    short side, from a seeded position, resized to N, as they are and mirrored."""
    from PIL import Image

    rng = np.random.default_rng(CALIBRATION_SEED)
    out = []
    for img in photos if photos is not None else sample_photos():
        h, w = img.shape[:2]
        for scale in SCALES:
            side = max(8, round(min(h, w) * scale))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = np.asarray(Image.fromarray(img[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR))
            out += [crop, crop[:, ::-1]]
    return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def _attacked(stego: Any) -> list[Any]:
    """The 8-bit stegos (B, C, N, N) torch tensor and what the quality bar's attacks make of them."""
    import torch

    from pipeline.core import distortions as D

    gen = torch.Generator().manual_seed(CALIBRATION_SEED)
    attacks = [
        D.mean_filter(stego),
        D.gaussian_filter(stego, 1.0),
        D.sharpen(stego),
        D.gaussian_noise(stego, 5.0, gen),
        D.jpeg(stego, 75),
    ]
    return [stego, *(D.quantize(a.clamp(0, 1)) for a in attacks)]


def calibration_inputs(model: Any, part: str, size: int) -> list[dict[str, np.ndarray]]:
    """The calibration set of ``part``: one dict of graph inputs (batch 1) per item."""
    import torch

    covers = calibration_covers(size)
    k = model.config.num_secrets
    secrets = np.concatenate([np.roll(covers, -(j + 1), axis=0) for j in range(k)], axis=1)  # each hides the next
    if part == "embed":
        return [{"cover": covers[i : i + 1], "secrets": secrets[i : i + 1]} for i in range(len(covers))]
    with torch.inference_mode():
        stego = model.embed(torch.from_numpy(covers), torch.from_numpy(secrets))
        stegos = torch.cat(_attacked(torch.round(stego.clamp(0, 1) * 255) / 255)).numpy()
    return [{"stego": stegos[i : i + 1]} for i in range(len(stegos))]


def learned_convolutions(onnx_path: Path) -> set[str]:
    """Names of the ONNX Conv nodes of the learned layers (``LEARNED``)."""
    import onnx

    names = set()
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        if node.op_type != "Conv":
            continue
        scope = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if CONV_CLASS in scope and any(f"/{prefix}" in scope or f": {prefix}" in scope for prefix in LEARNED):
            names.add(node.name)
    return names


def _onnx_name(op: Any) -> str:
    """The ONNX node an OpenVINO op came from (a Conv with a bias becomes ``NAME/WithoutBiases`` + ``NAME``)."""
    return op.get_friendly_name().removesuffix("/WithoutBiases")


def quantize_openvino(onnx_path: Path, model: Any, part: str, size: int, xml_path: Path) -> int:
    """Convert the fp32 ONNX graph of ``part`` to an OpenVINO IR with its learned convolutions quantized to int8
    (weights per channel, activations per tensor), calibrated on ``calibration_inputs``. Returns how many
    convolutions were quantized. Raises ``EngineError`` when NNCF is missing or no learned layer is found."""
    from pipeline.runtime.errors import EngineError

    try:
        import nncf
    except ImportError as exc:
        raise EngineError(f"int8 engines are quantized with NNCF ({exc}): pip install nncf") from exc
    import openvino as ov

    from pipeline.runtime.export import OPENVINO_PRECISION

    learned = learned_convolutions(onnx_path)
    ov_model = ov.convert_model(str(onnx_path))
    ignored = [op.get_friendly_name() for op in ov_model.get_ops() if _onnx_name(op) not in learned]
    kept = sum(1 for op in ov_model.get_ops() if op.get_type_name() == "Convolution" and _onnx_name(op) in learned)
    if not kept:
        raise EngineError(f"no learned convolution found in {onnx_path}: nothing to quantize")
    data = calibration_inputs(model, part, size)
    nncf.set_log_level(logging.ERROR)  # NNCF logs every node it leaves out at INFO, on stdout
    with contextlib.redirect_stdout(sys.stderr):  # and draws its progress bars there: stdout is the commands' output
        quantized = nncf.quantize(
            ov_model,
            nncf.Dataset(data),
            subset_size=len(data),
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
        )
    # As ``export.convert_openvino`` records its precision: the layers left in float run in fp32.
    quantized.set_rt_info(OPENVINO_PRECISION["int8"], ["runtime_options", "INFERENCE_PRECISION_HINT"])
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    log.info("%s: %d learned convolutions quantized to int8 (%d calibration inputs)", part, kept, len(data))
    return kept
