"""TensorRT FP16 engines through torch-tensorrt: built on first use on a GPU, checked against torch fp32.

These tests need a CUDA GPU and torch-tensorrt; elsewhere they are skipped with the reason the backend reports
(for example "no CUDA GPU (torch is a CPU-only build)" or "torch_tensorrt cannot be imported: ...").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.model.checkpoint import file_sha256, load_model
from pipeline.runtime import load_engine
from pipeline.runtime.manifest import model_folder, read_manifest
from pipeline.runtime.probe import gpu_description, probe_backend

TRT = probe_backend("tensorrt")
pytestmark = pytest.mark.skipif(not TRT.available, reason=f"TensorRT backend unavailable: {TRT.reason}")

SIZE = 64
FP16_TOL = 2e-2  # fp16 has ~3 decimal digits; outputs are in [0, 1]


@pytest.fixture(scope="module")
def trt_engine(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    engines_dir = tmp_path_factory.mktemp("trt") / "engines"
    engine = load_engine("tensorrt", str(tiny_checkpoint), SIZE, engines_dir=str(engines_dir))  # built here
    return engine, engines_dir


def test_tensorrt_fp16_matches_torch(trt_engine, tiny_checkpoint: Path, photo_factory) -> None:
    engine, _ = trt_engine
    assert (engine.info.backend, engine.info.precision) == ("tensorrt", "fp16")
    imgs = np.stack([photo_factory(SIZE, SIZE, i) for i in range(6)]).transpose(0, 3, 1, 2) / np.float32(255)
    cover, secret = imgs[:3], imgs[3:]
    model = load_model(tiny_checkpoint)
    with torch.inference_mode():
        stego_ref = model.embed(torch.from_numpy(cover), torch.from_numpy(secret))
        revealed_ref = model.reveal(stego_ref).numpy()
    assert np.abs(engine.embed(cover, secret) - stego_ref.numpy()).max() <= FP16_TOL
    assert np.abs(engine.reveal(stego_ref.numpy()) - revealed_ref).max() <= FP16_TOL


def test_tensorrt_manifest_ties_engine_to_gpu_and_checkpoint(trt_engine, tiny_checkpoint: Path) -> None:
    _, engines_root = trt_engine
    engines_dir = model_folder(engines_root, file_sha256(tiny_checkpoint))
    entries = read_manifest(engines_dir)
    for part in ("embed", "reveal"):
        e = entries[f"tensorrt/fp16/{SIZE}/{part}"]
        assert e.file.endswith(".trt.ep") and file_sha256(engines_dir / e.file) == e.sha256
        assert e.checkpoint_sha256 == file_sha256(tiny_checkpoint)
        assert (e.batch_min, e.batch_opt, e.batch_max) == (1, 8, 32)
        assert e.gpu["arch"] == gpu_description()["arch"] and e.gpu["tensorrt"]
        assert "torch-tensorrt" in e.versions


def test_tensorrt_splits_batches_above_its_range(trt_engine) -> None:
    engine, _ = trt_engine
    x = np.random.default_rng(0).random((40, 3, SIZE, SIZE), dtype=np.float32)  # above the compiled max of 32
    out = engine.reveal(x)
    assert out.shape == (40, 3, SIZE, SIZE)
    assert np.abs(out[32:] - engine.reveal(x[32:])).max() <= 1e-3


def test_auto_prefers_tensorrt_on_a_gpu(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.runtime import resolve_backend

    caplog.set_level("INFO", logger="pipeline.runtime")
    assert resolve_backend("auto") == "tensorrt"
    assert any("backend auto -> tensorrt" in r.getMessage() for r in caplog.records)
