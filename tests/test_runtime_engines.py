"""Compiled backends on CPU with real ONNX Runtime and OpenVINO: first-use build (concurrent), parity with torch,
refusal of mismatched or missing engines, the ``engines`` / ``build-engines`` commands and the benchmark script.

The engines of the tiny checkpoint are built once per session, by two processes racing for them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.model import build_model, get_config
from pipeline.model.checkpoint import file_sha256, load_model, save_checkpoint
from pipeline.runtime import EngineError, EngineMismatchError, EngineNotBuiltError, load_engine
from pipeline.runtime.manifest import model_folder, model_folders, read_manifest
from pipeline.runtime.probe import probe_backend

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # a multiple of the tiny preset's 4; small enough that the tests spend their time in the exporters
TOL = 1e-4  # max abs difference on [0, 1] outputs that fp32 backends must meet

needs_openvino = pytest.mark.skipif(
    not probe_backend("openvino").available, reason=f"OpenVINO unusable: {probe_backend('openvino').reason}"
)

_RACE = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from pipeline.runtime import load_engine
engine = load_engine("onnxruntime", sys.argv[1], int(sys.argv[2]), engines_dir=sys.argv[3])
print("loaded", engine.info.backend, engine.info.precision)
"""


@dataclass
class RaceResult:
    engines_dir: Path
    returncodes: list[int]
    logs: list[str]


@pytest.fixture(scope="module")
def race(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> RaceResult:
    """Two processes ask for the same missing ONNX engines at the same time (what a batch job's workers do)."""
    engines_dir = tmp_path_factory.mktemp("race") / "engines"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(tiny_checkpoint), str(SIZE), str(engines_dir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    return RaceResult(engines_dir, [p.returncode for p in procs], outs)


@pytest.fixture(scope="module")
def engines_root(race: RaceResult) -> Path:
    """The engines folder the race built into (``--engines-dir``)."""
    assert race.returncodes == [0, 0], "\n".join(race.logs)
    return race.engines_dir


@pytest.fixture(scope="module")
def engines_dir(engines_root: Path, tiny_checkpoint: Path) -> Path:
    """The tiny model's own folder in it."""
    return model_folder(engines_root, file_sha256(tiny_checkpoint))


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint: Path) -> torch.nn.Module:
    return load_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny model (other seed): its sha256 differs from ``tiny_checkpoint``'s."""
    torch.manual_seed(1)
    return save_checkpoint(build_model(get_config("tiny")), tmp_path_factory.mktemp("other") / "other.pt")


def _photos(photo_factory, n: int, seed: int) -> np.ndarray:
    """(n, 3, SIZE, SIZE) float32 photo-like images in [0, 1]."""
    return np.stack([photo_factory(SIZE, SIZE, seed + i) for i in range(n)]).transpose(0, 3, 1, 2) / np.float32(255)


def _torch_outputs(model, cover: np.ndarray, secret: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        stego = model.embed(torch.from_numpy(cover), torch.from_numpy(secret))
        return stego.numpy(), model.reveal(stego).numpy()


def test_concurrent_first_use_builds_each_engine_once(race: RaceResult, tiny_checkpoint: Path) -> None:
    assert race.returncodes == [0, 0], "\n".join(race.logs)
    assert all("loaded onnxruntime fp32" in log for log in race.logs)
    builds = [line for log in race.logs for line in log.splitlines() if "building it now (first use)" in line]
    assert len(builds) == 2, builds  # embed and reveal, each built by exactly one of the two processes
    folder = model_folder(race.engines_dir, file_sha256(tiny_checkpoint))
    assert [p.name for p in model_folders(race.engines_dir)] == [folder.name]  # one folder per model
    entries = read_manifest(folder)
    assert set(entries) == {f"onnx/fp32/{SIZE}/embed", f"onnx/fp32/{SIZE}/reveal"}
    for e in entries.values():
        assert file_sha256(folder / e.file) == e.sha256
        assert e.checkpoint_sha256 == file_sha256(tiny_checkpoint)
        assert (e.size, e.precision, e.batch_min, e.batch_max) == (SIZE, "fp32", 1, None)
        assert e.verify_max_abs_diff is not None and e.verify_max_abs_diff <= TOL
        assert {"torch", "onnx", "onnxruntime"} <= set(e.versions)
    assert not list(race.engines_dir.rglob(".build-*")), "staging folders left behind"


def test_onnxruntime_matches_torch(engines_root: Path, tiny_checkpoint: Path, tiny_model, photo_factory) -> None:
    engine = load_engine("onnxruntime", str(tiny_checkpoint), SIZE, engines_dir=str(engines_root), build=False)
    cover, secret = _photos(photo_factory, 3, 0), _photos(photo_factory, 3, 10)
    stego_ref, revealed_ref = _torch_outputs(tiny_model, cover, secret)
    stego = engine.embed(cover, secret)
    assert stego.shape == cover.shape and stego.dtype == np.float32
    assert np.abs(stego - stego_ref).max() <= TOL
    assert np.abs(engine.reveal(stego_ref) - revealed_ref).max() <= TOL
    assert np.abs(engine.embed(cover[:1], secret[:1]) - stego_ref[:1]).max() <= TOL  # batch 1 as well
    assert engine.info.model_sha256 == file_sha256(tiny_checkpoint)
    assert [f for f, _ in engine.info.engine_files] == [f"embed-{SIZE}-fp32.onnx", f"reveal-{SIZE}-fp32.onnx"]


@needs_openvino
def test_openvino_fp32_built_on_first_use_and_matches_torch(
    engines_root: Path,
    engines_dir: Path,
    tiny_checkpoint: Path,
    tiny_model,
    photo_factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="pipeline.runtime")
    engine = load_engine("openvino", str(tiny_checkpoint), SIZE, precision="fp32", engines_dir=str(engines_root))
    assert sum("building it now (first use)" in r.getMessage() for r in caplog.records) == 2
    entries = read_manifest(engines_dir)
    for part in ("embed", "reveal"):
        e = entries[f"openvino/fp32/{SIZE}/{part}"]
        assert e.extra_files == {f"{part}-{SIZE}-fp32.bin": file_sha256(engines_dir / f"{part}-{SIZE}-fp32.bin")}
    cover, secret = _photos(photo_factory, 5, 20), _photos(photo_factory, 5, 30)
    stego_ref, revealed_ref = _torch_outputs(tiny_model, cover, secret)
    # batch 5 goes through five requests on the streams, batch 1 through one
    assert np.abs(engine.embed(cover, secret) - stego_ref).max() <= TOL
    assert np.abs(engine.reveal(stego_ref) - revealed_ref).max() <= TOL
    assert np.abs(engine.embed(cover[:1], secret[:1]) - stego_ref[:1]).max() <= TOL
    assert np.abs(engine.reveal(stego_ref[:1]) - revealed_ref[:1]).max() <= TOL
    assert engine.info.backend == "openvino" and engine.info.precision == "fp32"


def test_batches_above_the_engine_limit_are_split(engines_root: Path, tiny_checkpoint: Path, photo_factory) -> None:
    engine = load_engine("onnxruntime", str(tiny_checkpoint), SIZE, engines_dir=str(engines_root), build=False)
    cover, secret = _photos(photo_factory, 5, 40), _photos(photo_factory, 5, 50)
    whole = engine.embed(cover, secret)
    engine.max_batch = 2  # as a TensorRT engine compiled for batches up to 2 would be
    np.testing.assert_array_equal(engine.embed(cover, secret), whole)


def test_bad_inputs_get_clear_errors(engines_root: Path, tiny_checkpoint: Path) -> None:
    engine = load_engine("onnxruntime", str(tiny_checkpoint), SIZE, engines_dir=str(engines_root), build=False)
    ok = np.zeros((2, 3, SIZE, SIZE), np.float32)
    with pytest.raises(ValueError, match=r"cover must have shape \(B, 3, 64, 64\)"):
        engine.embed(np.zeros((2, 3, 32, 32), np.float32), ok)
    with pytest.raises(ValueError, match="same batch"):
        engine.embed(ok, ok[:1])
    with pytest.raises(ValueError, match="float images"):
        engine.reveal(ok.astype(np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        engine.reveal(torch.zeros(1, 3, SIZE, SIZE))


def test_models_take_turns_in_one_engines_folder(
    engines_root: Path, engines_dir: Path, tiny_checkpoint: Path, other_checkpoint: Path, photo_factory
) -> None:
    """Another model finds no engines of its own and builds them in its own folder beside the first model's, which
    stay as they were; then each loads with no build (the old one-folder layout refused the second model and its
    printed rebuild command broke the first)."""
    before = {p.name: file_sha256(p) for p in engines_dir.iterdir() if p.is_file() and p.name != ".lock"}
    other = load_engine("onnxruntime", str(other_checkpoint), SIZE, engines_dir=str(engines_root))
    assert other.build_seconds > 0 and other.info.model_sha256 == file_sha256(other_checkpoint)
    other_dir = model_folder(engines_root, file_sha256(other_checkpoint))
    assert {e.checkpoint_sha256 for e in read_manifest(other_dir).values()} == {file_sha256(other_checkpoint)}
    assert {p.name: file_sha256(p) for p in engines_dir.iterdir() if p.is_file() and p.name != ".lock"} == before
    cover, secret = _photos(photo_factory, 1, 0), _photos(photo_factory, 1, 10)
    for ckpt in (tiny_checkpoint, other_checkpoint, tiny_checkpoint):
        engine = load_engine("onnxruntime", str(ckpt), SIZE, engines_dir=str(engines_root), build=False)
        assert engine.build_seconds == 0 and engine.info.model_sha256 == file_sha256(ckpt)
        reference = load_model(ckpt)
        with torch.inference_mode():
            want = reference.embed(torch.from_numpy(cover), torch.from_numpy(secret)).numpy()
        assert np.abs(engine.embed(cover, secret) - want).max() <= TOL


def test_a_folder_of_another_checkpoint_is_refused_not_replaced(
    engines_dir: Path, other_checkpoint: Path, tmp_path: Path
) -> None:
    """Engines copied by hand under another model's folder name are refused, never used or silently replaced."""
    root = tmp_path / "engines"
    wrong = model_folder(root, file_sha256(other_checkpoint))
    shutil.copytree(engines_dir, wrong)
    manifest = (wrong / "manifest.json").read_bytes()
    with pytest.raises(EngineMismatchError) as err:
        load_engine("onnxruntime", str(other_checkpoint), SIZE, engines_dir=str(root))  # build=True too
    msg = str(err.value)
    assert "was built from checkpoint" in msg and str(other_checkpoint) in msg
    assert "python build_engines.py" in msg and f"--checkpoint {other_checkpoint}" in msg
    assert (wrong / "manifest.json").read_bytes() == manifest


def test_the_older_one_folder_layout_gets_a_clear_message(
    engines_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    old = tmp_path / "engines"
    shutil.copytree(engines_dir, old)  # what an older version left: manifest.json at the top of --engines-dir
    with pytest.raises(EngineError, match="older one-model layout"):
        load_engine("onnxruntime", str(tiny_checkpoint), SIZE, engines_dir=str(old))
    assert not model_folders(old)  # nothing built beside it


def test_missing_engine_refused_when_building_is_off(tiny_checkpoint: Path, tmp_path: Path) -> None:
    empty = tmp_path / "none"
    with pytest.raises(EngineNotBuiltError, match=r"python build_engines\.py .*--targets onnx"):
        load_engine("onnxruntime", str(tiny_checkpoint), SIZE, engines_dir=str(empty), build=False)
    assert not empty.exists()  # refusing creates nothing


def test_auto_picks_and_logs_the_best_backend(
    engines_root: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = next(n for n in ("openvino", "onnxruntime", "torch") if probe_backend(n).available)
    if probe_backend("tensorrt").available:
        pytest.skip("this machine has TensorRT: auto's GPU choice is covered by test_runtime_tensorrt.py")
    caplog.set_level("INFO", logger="pipeline.runtime")
    engine = load_engine("auto", str(tiny_checkpoint), SIZE, precision="fp32", engines_dir=str(engines_root))
    assert engine.info.backend == expected
    assert any(f"backend auto -> {expected}" in r.getMessage() for r in caplog.records)


def test_engines_command_lists_engines_and_backends(
    engines_root: Path, engines_dir: Path, tiny_checkpoint: Path, other_checkpoint: Path
) -> None:
    from pipeline.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["engines", "--engines-dir", str(engines_root), "--checkpoint", str(tiny_checkpoint)])
    assert res.exit_code == 0, res.output
    assert f"onnx/fp32/{SIZE}/embed" in res.output and "runs here" in res.output
    for name in ("tensorrt", "openvino", "onnxruntime", "torch", "auto ->"):
        assert name in res.output
    trt = probe_backend("tensorrt")
    if not trt.available:
        assert f"tensorrt     no   {trt.reason}" in res.output
    assert f"{engines_dir.name}/  from {tiny_checkpoint}  (in use)" in res.output
    res = runner.invoke(
        main, ["engines", "--engines-dir", str(engines_root), "--checkpoint", str(other_checkpoint), "--json"]
    )
    assert res.exit_code == 0, res.output
    listing = json.loads(res.output)
    tiny_rows = [r for r in listing["engines"] if r["folder"] == engines_dir.name]
    assert tiny_rows and {(r["status"], r["in_use"]) for r in tiny_rows} == {("ok", False)}  # another model's
    assert listing["checkpoint_folder"] == model_folder(engines_root, file_sha256(other_checkpoint)).name
    assert listing["machine"]["cores"] >= 1 and "torch" in listing["versions"]


def test_build_engines_command_keeps_current_engines_and_reports_skips(
    engines_root: Path, engines_dir: Path, tiny_checkpoint: Path
) -> None:
    from pipeline.cli import main

    trt = probe_backend("tensorrt")
    targets = "onnx" if trt.available else "onnx,tensorrt"  # a real TensorRT build belongs to the GPU tests
    before = (engines_dir / "manifest.json").read_bytes()
    args = ["build-engines", "--checkpoint", str(tiny_checkpoint), "--size", str(SIZE), "--out", str(engines_root)]
    res = CliRunner().invoke(main, [*args, "--targets", targets, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert f"up to date  onnx/fp32/{SIZE}/embed" in res.output
    if not trt.available:
        assert f"skipped because {trt.reason}" in res.output
    assert (engines_dir / "manifest.json").read_bytes() == before
    assert f"manifest: {engines_dir / 'manifest.json'}" in res.output


@needs_openvino
def test_benchmark_script_measures_and_saves(engines_root: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_backends", REPO / "benchmarks" / "backends.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    df = bench.run_benchmark(
        str(tiny_checkpoint),
        str(engines_root),
        SIZE,
        batches=(1, 2),
        backends=("torch", "onnxruntime", "openvino"),
        precisions=("fp32",),
        min_seconds=0.0,
        min_iters=1,
        threads=1,
        progress=False,
    )
    assert len(df) == 3 * 2 * 2 and (df.images_per_s > 0).all()
    assert (df[df.backend != "torch"].max_abs_diff <= TOL).all()
    machine = bench.machine_description()
    paths = bench.save_results(df, machine, tmp_path, "pytest")
    import pandas as pd

    assert len(pd.read_parquet(paths["parquet"])) == len(df)
    table = paths["markdown"].read_text()
    assert "| openvino | fp32 |" in table and machine["model"] in table
    assert paths["png"].stat().st_size > 1000


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
@pytest.mark.parametrize(
    "overrides",
    [{}, {"base_tile": True}, {"base_tile": True, "mirror": "pilot"}],
    ids=["plain-base", "tile-base", "tile-base-pilot-mirror"],
)
def test_fine_code_exports_and_matches_torch(backend: str, overrides: dict, tmp_path: Path, photo_factory) -> None:
    """A model with the fine code (embed runs reveal inside; reveal gates the code per image) through the exporters:
    the projection, the per-image statistics and the gates come out as torch computes them; with the tile-coded
    base (the shipped model's code) its transforms too, and with the mirror read from the base pilot that decision
    (a mirrored stego revealed as torch reveals it)."""
    torch.manual_seed(0)
    model = build_model(get_config("tiny", residual_gain=0.06, **overrides)).eval()
    ckpt = save_checkpoint(model, tmp_path / "fine.pt")
    # fp32 named: OpenVINO's own choice is bf16 on a CPU with AVX512_BF16 or AMX, which TOL is not for
    engine = load_engine(backend, str(ckpt), SIZE, precision="fp32", engines_dir=str(tmp_path / "engines"))
    cover, secret = _photos(photo_factory, 2, 40), _photos(photo_factory, 2, 50)
    torch_model = load_model(ckpt)
    stego_ref, revealed_ref = _torch_outputs(torch_model, cover, secret)
    assert np.abs(engine.embed(cover, secret) - stego_ref).max() <= TOL
    assert np.abs(engine.reveal(stego_ref) - revealed_ref).max() <= TOL
    mirrored = np.ascontiguousarray(stego_ref[..., ::-1])
    with torch.inference_mode():
        assert np.abs(engine.reveal(mirrored) - torch_model.reveal(torch.from_numpy(mirrored)).numpy()).max() <= TOL


def test_deblur_runs_before_the_compiled_reveal(tmp_path: Path, photo_factory) -> None:
    """A model with the blind deblur: the engines' reveal graph does not hold it, the engine runs it first, and a
    blurred stego gives what torch gives (the stage is in the compiled engines' common base: one backend shows it)."""
    backend = "onnxruntime"
    from pipeline.core import distortions as D

    torch.manual_seed(0)
    model = build_model(get_config("tiny", residual_gain=0.06, deblur=True)).eval()
    ckpt = save_checkpoint(model, tmp_path / "deblur.pt")
    engine = load_engine(backend, str(ckpt), SIZE, engines_dir=str(tmp_path / "engines"))
    cover, secret = _photos(photo_factory, 2, 40), _photos(photo_factory, 2, 50)
    torch_model = load_model(ckpt)
    stego, _ = _torch_outputs(torch_model, cover, secret)
    blurred = D.quantize(D.mean_filter(torch.from_numpy(stego)))
    with torch.inference_mode():
        ref = torch_model.reveal(blurred).numpy()
        assert (torch_model.restoration.deblur.blur_of(blurred) > 0.2).all()  # the stage acts on these images
        assert np.abs(torch_model.reveal_core(blurred).numpy() - ref).max() > 1e-2
    assert np.abs(engine.reveal(blurred.numpy()) - ref).max() <= TOL


def test_registration_and_detection_run_beside_the_compiled_reveal(tmp_path: Path, photo_factory) -> None:
    """A model that registers: the compiled engine moves a shifted stego back before its graph, scores it, and
    ``reveal_and_detect`` gives what torch's ``reveal`` and ``detect`` give, with one search."""
    from pipeline.model.checkpoint import update_meta

    torch.manual_seed(0)
    model = build_model(get_config("tiny", residual_gain=0.06, base_tile=True, mirror="pilot", register=True))
    ckpt = update_meta(save_checkpoint(model.eval(), tmp_path / "reg.pt"), detection={"threshold": 5.5})
    engine = load_engine("onnxruntime", str(ckpt), 64, engines_dir=str(tmp_path / "engines"))
    torch_model = load_model(ckpt)
    cover, secret = _photos(photo_factory, 2, 40), _photos(photo_factory, 2, 50)
    with torch.inference_mode():
        stego = torch.from_numpy(engine.embed(cover, secret)).mul(255).round().div(255)
        shifted = torch.nn.functional.pad(stego[..., 2:, 3:], (0, 3, 0, 2), mode="replicate")
        images = torch.cat([stego, shifted, torch.from_numpy(cover)])
        want, want_scores = torch_model.reveal(images).numpy(), torch_model.detect(images, 5.5).numpy()
        assert np.abs(torch_model.reveal_core(images).numpy() - want).max() > 1e-2  # registration acts here
    got, scores = engine.reveal_and_detect(images.numpy())
    assert engine.detect_threshold == 5.5
    assert np.abs(got - want).max() <= TOL and np.allclose(scores, want_scores, atol=1e-4)
    assert np.abs(engine.reveal(images.numpy()) - want).max() <= TOL
