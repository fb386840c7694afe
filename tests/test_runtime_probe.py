"""Backend selection, precision checks, machine probing, the manifest and its lock (fast: nothing is exported)."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.model.checkpoint import CheckpointError, file_sha256, load_model
from pipeline.runtime import BackendUnavailableError, EngineError, load_engine, resolve_backend
from pipeline.runtime.build import build_engines
from pipeline.runtime.manifest import engines_lock, model_folder, read_manifest
from pipeline.runtime.probe import (
    BACKENDS,
    cpu_description,
    import_torch_tensorrt,
    library_versions,
    normalize_precision,
    probe_backend,
)

TRT = probe_backend("tensorrt")
OPENVINO = probe_backend("openvino")


def test_precision_names_are_normalized_and_unknown_ones_refused() -> None:
    assert [normalize_precision(p) for p in ("FP32", "float32", "bfloat16", "half")] == ["fp32", "fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        normalize_precision("int4")


def test_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose auto, tensorrt, openvino, onnxruntime, torch"):
        resolve_backend("tflite")


def test_auto_on_cpu_never_picks_a_gpu_backend() -> None:
    picked = resolve_backend("auto", device="cpu")
    assert picked in BACKENDS and picked != "tensorrt"
    assert probe_backend(picked).device == "cpu"


def test_machine_description_and_versions() -> None:
    cpu = cpu_description()
    assert cpu["cores"] >= 1 and cpu["model"]
    versions = library_versions()
    assert versions["torch"] == torch.__version__


def test_torch_backend_is_the_reference(tiny_checkpoint: Path) -> None:
    engine = load_engine("torch", str(tiny_checkpoint), 32, engines_dir=None)
    assert (engine.info.backend, engine.info.precision, engine.info.device) == ("torch", "fp32", "cpu")
    cover = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        ref = load_model(tiny_checkpoint).embed(torch.from_numpy(cover), torch.from_numpy(cover)).numpy()
    np.testing.assert_array_equal(engine.embed(cover, cover), ref)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: fp16 torch is allowed on it")
def test_precisions_a_backend_cannot_run_are_refused_not_replaced(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="cannot run fp16 on cpu"):
        load_engine("torch", str(tiny_checkpoint), 32, precision="fp16")
    with pytest.raises(BackendUnavailableError, match="onnxruntime backend cannot run bf16"):
        load_engine("onnxruntime", str(tiny_checkpoint), 32, precision="bf16", engines_dir=str(tmp_path))
    if OPENVINO.available and "bf16" not in OPENVINO.precisions:
        with pytest.raises(BackendUnavailableError, match=r"openvino backend cannot run bf16 .*no bf16"):
            load_engine("openvino", str(tiny_checkpoint), 32, precision="bf16", engines_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing was built for a refused request


def test_bad_checkpoint_and_size_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_engine("onnxruntime", str(tmp_path / "nope.pt"), 64, engines_dir=str(tmp_path))
    with pytest.raises(ValueError, match="size 30 is not a positive multiple of 8"):
        load_engine("onnxruntime", str(tiny_checkpoint), 30, engines_dir=str(tmp_path))


def test_corrupt_manifest_is_reported(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = model_folder(tmp_path, file_sha256(tiny_checkpoint))  # the model's own folder
    folder.mkdir()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match=r"cannot read .*manifest\.json"):
        load_engine("onnxruntime", str(tiny_checkpoint), 64, engines_dir=str(tmp_path))
    (folder / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(EngineError, match="not an sris-pipeline engines manifest"):
        read_manifest(folder)


@pytest.mark.skipif(TRT.available, reason="TensorRT is usable here: test_runtime_tensorrt.py builds real engines")
def test_tensorrt_without_gpu_is_skipped_with_the_reason(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="backend tensorrt is not usable here"):
        load_engine("tensorrt", str(tiny_checkpoint), 64, engines_dir=str(tmp_path))
    report = build_engines(tiny_checkpoint, 64, targets=["tensorrt"], out=tmp_path / "e", progress=False)
    assert [(r.key, r.status) for r in report] == [("tensorrt/fp16", "skipped")]
    assert report[0].detail == f"skipped because {TRT.reason}"


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None, reason="torch_tensorrt is installed here")
def test_missing_torch_tensorrt_is_one_clear_error() -> None:
    with pytest.raises(BackendUnavailableError, match="torch_tensorrt cannot be imported: No module named"):
        import_torch_tensorrt()


def test_exclusive_lock_serializes_builders(tmp_path: Path) -> None:
    """Two holders of the exclusive lock never overlap (the guarantee first-use builds rely on)."""
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with engines_lock(tmp_path, exclusive=True):
            t0 = time.monotonic()
            time.sleep(0.2)
            spans.append((t0, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, second = sorted(spans)
    assert second[0] >= first[1]


def test_shared_lock_on_a_missing_folder_creates_nothing(tmp_path: Path) -> None:
    with engines_lock(tmp_path / "absent", exclusive=False):
        pass
    assert not (tmp_path / "absent").exists()
