"""int8 OpenVINO engines (NNCF post-training quantization) and the static-batch OpenVINO requests.

What is quantized (the learned convolutions, nothing of the analytic codes), the manifest's precision, the quality
bounds against torch fp32 with the trained model on natural photos (as ``test_runtime_bf16.py`` bounds bf16), the
rule that decides when int8 is OpenVINO's default, and requests padded to the static batch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.model.checkpoint import default_checkpoint_path, file_sha256, load_model
from pipeline.runtime import load_engine, openvino_default
from pipeline.runtime.manifest import model_folder, read_manifest
from pipeline.runtime.probe import probe_backend
from pipeline.runtime.quality import figure_changes, holds, int8_holds

OPENVINO = probe_backend("openvino")
needs_int8 = pytest.mark.skipif(
    not OPENVINO.available or "int8" not in OPENVINO.precisions or importlib.util.find_spec("nncf") is None,
    reason=f"int8 engines need OpenVINO's int8 ({OPENVINO.reason or 'not here'}) and NNCF (the int8 extra)",
)
SIZE = 64
# Max |int8 - torch| on the tiny untrained model's [0, 1] outputs: quantization steps of its activations, far above
# float rounding (1e-4) and far below what a wrong graph gives (0.1 and more).
TINY_TOL = 0.03
INT8_TOL_DB = 0.3
# The analog secret through the int8 reveal: 22.55 dB against 27.18 in fp32 on these photos (2-core AMD EPYC,
# OpenVINO 2026.4, NNCF 3.4), the learned reveal losing 4.6 dB to 8-bit activations. That is why the int8 record
# (``pipeline.runtime.quality``) keeps int8 off by default; this bound catches a calibration that breaks further.
INT8_SECRET_TOL_DB = 6.0


def _photos(photo_factory, n: int, seed: int, size: int = SIZE) -> np.ndarray:
    return np.stack([photo_factory(size, size, seed + i) for i in range(n)]).transpose(0, 3, 1, 2) / np.float32(255)


def _quantized_convolutions(xml: Path) -> tuple[set[str], set[str]]:
    """(Convolutions whose activation input is quantized, all Convolutions) of an IR, by their ONNX node names."""
    import openvino as ov

    quantized, convs = set(), set()
    for op in ov.Core().read_model(str(xml)).get_ops():
        if op.get_type_name() != "Convolution":
            continue
        name = op.get_friendly_name().removesuffix("/WithoutBiases")
        convs.add(name)
        if op.input_value(0).get_node().get_type_name() == "FakeQuantize":
            quantized.add(name)
    return quantized, convs


@needs_int8
@pytest.mark.slow
def test_int8_quantizes_the_learned_convolutions_only(tiny_checkpoint: Path, tmp_path: Path, photo_factory) -> None:
    from pipeline.runtime.quantize import learned_convolutions

    engine = load_engine("openvino", str(tiny_checkpoint), SIZE, precision="int8", engines_dir=str(tmp_path))
    assert engine.info.precision == "int8"
    folder = model_folder(tmp_path, file_sha256(tiny_checkpoint))
    entries = read_manifest(folder)
    for part in ("embed", "reveal"):
        entry = entries[f"openvino/int8/{SIZE}/{part}"]
        assert entry.precision == "int8" and entry.file == f"{part}-{SIZE}-int8.xml"
        quantized, convs = _quantized_convolutions(folder / entry.file)
        learned = learned_convolutions(folder / entries[f"onnx/fp32/{SIZE}/{part}"].file)
        assert quantized and quantized == learned & convs, part
        assert convs - quantized, f"{part}: the analytic convolutions must stay in float"
    model = load_model(tiny_checkpoint)
    cover, secret = _photos(photo_factory, 3, 10), _photos(photo_factory, 3, 20)
    with torch.inference_mode():
        stego_ref = model.embed(torch.from_numpy(cover), torch.from_numpy(secret)).numpy()
        revealed_ref = model.reveal(torch.from_numpy(stego_ref)).numpy()
    assert np.abs(engine.embed(cover, secret) - stego_ref).max() <= TINY_TOL
    assert np.abs(engine.reveal(stego_ref) - revealed_ref).max() <= TINY_TOL


@pytest.mark.skipif(not OPENVINO.available, reason=f"OpenVINO unusable: {OPENVINO.reason}")
def test_requests_of_a_static_batch_are_padded(tiny_checkpoint: Path, tmp_path: Path, photo_factory) -> None:
    """Batches that requests of 2 images do not divide: the last request is padded and its extra outputs dropped."""
    from pipeline.runtime.openvino_engine import OpenVINOEngine

    one = load_engine("openvino", str(tiny_checkpoint), SIZE, precision="fp32", engines_dir=str(tmp_path))
    folder = model_folder(tmp_path, file_sha256(tiny_checkpoint))
    files = [folder / f"{part}-{SIZE}-fp32.xml" for part in ("embed", "reveal")]
    two = OpenVINOEngine(*files, one.info, one.stages, streams=2, request_batch=2)
    cover, secret = _photos(photo_factory, 5, 30), _photos(photo_factory, 5, 40)
    for batch in (5, 1):
        stego = two.embed(cover[:batch], secret[:batch])
        assert stego.shape == (batch, 3, SIZE, SIZE)
        assert np.abs(stego - one.embed(cover[:batch], secret[:batch])).max() <= 1e-5
        assert np.abs(two.reveal(stego) - one.reveal(stego)).max() <= 1e-5


def test_figure_changes_and_the_bar() -> None:
    reference = {"psnr_cover": 37.0, "ssim_cover": 0.95, "psnr_secret": 29.0, "psnr_secret_jpeg50": 16.4, "margin": 1}
    measured = {"psnr_cover": 37.1, "ssim_cover": 0.9, "psnr_secret": 28.85, "psnr_secret_jpeg50": 16.1, "margin": 0}
    changes = figure_changes(reference, measured)
    assert set(changes) == {"psnr_cover", "psnr_secret", "psnr_secret_jpeg50"}  # PSNR figures, not margins or SSIM
    assert changes["psnr_secret_jpeg50"] == pytest.approx(-0.3)
    assert not holds(changes) and holds({k: v for k, v in changes.items() if k != "psnr_secret_jpeg50"})


@pytest.mark.skipif(not default_checkpoint_path().is_file(), reason="the shipped model is not installed")
def test_int8_is_the_default_only_where_the_figures_hold() -> None:
    """The shipped model's int8 figures were measured (pipeline/runtime/int8.json): OpenVINO's default follows them,
    and never picks int8 for a model that was not measured."""
    sha = load_model(None).checkpoint_sha256
    allowed = ("fp32", "bf16", "int8")
    assert openvino_default(allowed, "0" * 64) == "bf16"
    assert openvino_default(("fp32", "int8"), None) == "fp32"
    from pipeline.runtime.probe import int8_units

    expected = "int8" if int8_units() and int8_holds(sha) else "bf16"
    assert openvino_default(allowed, sha) == expected


@needs_int8
@pytest.mark.slow
@pytest.mark.skipif(not default_checkpoint_path().is_file(), reason="the shipped model is not installed")
def test_int8_quality_against_torch_on_natural_photos(tmp_path: Path) -> None:
    """The trained model's int8 engine on natural photos: the stego's PSNR within INT8_TOL_DB of torch fp32, the
    analog secret's within INT8_SECRET_TOL_DB (measured: 4.6 dB under fp32, which keeps int8 from being the
    default)."""
    from test_runtime_bf16 import natural_photos, quality

    reference = load_engine("torch", None, 256)
    covers = natural_photos()
    secrets = np.concatenate([np.roll(covers, i + 1, axis=0) for i in range(reference.info.num_secrets)], axis=1)
    int8 = load_engine("openvino", None, 256, precision="int8", engines_dir=str(tmp_path / "engines"))
    cover_ref, secret_ref = quality(reference, covers, secrets)
    cover_int8, secret_int8 = quality(int8, covers, secrets)
    print(f"torch fp32: {cover_ref:.2f} / {secret_ref:.2f} dB; openvino int8: {cover_int8:.2f} / {secret_int8:.2f} dB")
    assert abs(cover_int8 - cover_ref) <= INT8_TOL_DB
    assert abs(secret_int8 - secret_ref) <= INT8_SECRET_TOL_DB
