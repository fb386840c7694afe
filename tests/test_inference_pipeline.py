"""The inference pipeline of a job: the checkpoint is read once and the model handed down; engines are complete
when built (no attribute set afterwards) and declare every method the jobs call; models take turns in one engines
folder."""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from jobkit import job_args, photo_shard, png_bytes

from pipeline.cli import main
from pipeline.model import build_model, get_config
from pipeline.model.checkpoint import file_sha256, save_checkpoint
from pipeline.runtime.base import Engine

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript")), reason="needs onnxruntime, onnxscript"
)


@contextlib.contextmanager
def counted_torch_loads() -> Iterator[list[str]]:
    """Every ``torch.load`` this process makes inside the block, by what it read (the real function runs)."""
    calls: list[str] = []
    real = torch.load

    def counting(f, *args, **kwargs):
        calls.append(str(f))
        return real(f, *args, **kwargs)

    torch.load = counting
    try:
        yield calls
    finally:
        torch.load = real


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, photo_factory_module) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    photo_shard(root / "src" / "s0.tar", 2, seed=0)
    (root / "secret.png").write_bytes(png_bytes(photo_factory_module(40, 40, seed=99)))
    return {"root": root, "src": root / "src", "secret": root / "secret.png"}


@pytest.fixture(scope="module")
def photo_factory_module():
    from conftest import synthetic_photo

    return synthetic_photo


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    return save_checkpoint(build_model(get_config("tiny")), tmp_path_factory.mktemp("other") / "other.pt")


def test_an_embed_and_an_extract_job_read_their_checkpoint_once(tiny_checkpoint: Path, inputs, tmp_path) -> None:
    """One ``torch.load`` per job: the job loads the model and hands it to the engine and its stages (it was three
    reads and two hashes of the file)."""
    out = tmp_path / "stegos"
    with counted_torch_loads() as loads:
        res = run(*job_args("embed", inputs["src"], out, tiny_checkpoint, SIZE, "--secret", inputs["secret"]))
    assert res.exit_code == 0, res.output
    assert loads == [str(tiny_checkpoint)]
    with counted_torch_loads() as loads:
        res = run(*job_args("extract", out, tmp_path / "revealed", tiny_checkpoint, SIZE))
    assert res.exit_code == 0, res.output
    assert loads == [str(tiny_checkpoint)]


@pytest.fixture(scope="module")
def first_compiled_job(tiny_checkpoint: Path, inputs) -> tuple[Path, list[str], str]:
    """An embed job on a compiled backend that builds its engines first: (engines folder, its torch.loads, output)."""
    engines = inputs["root"] / "engines"
    args = job_args("embed", inputs["src"], inputs["root"] / "o1", tiny_checkpoint, SIZE, "--secret", inputs["secret"])
    with counted_torch_loads() as loads:
        res = run(*args, "--backend", "onnxruntime", "--engines-dir", engines)  # the last --backend counts
    assert res.exit_code == 0, res.output
    return engines, loads, res.stderr


@needs_onnx
def test_a_compiled_job_that_builds_its_engines_reads_its_checkpoint_once(first_compiled_job, tiny_checkpoint) -> None:
    _, loads, stderr = first_compiled_job
    assert "building ONNX fp32 engines" in stderr  # the build exported the model the job had loaded
    assert loads == [str(tiny_checkpoint)]


@needs_onnx
def test_jobs_of_two_models_take_turns_in_one_engines_folder(
    first_compiled_job, tiny_checkpoint: Path, other_checkpoint: Path, inputs
) -> None:
    """``embed --checkpoint k2`` straight after a default ``embed`` in the same folder (and back) runs: each model
    builds its engines once, in its own folder, and finds them the next time (it exited 1 with "refusing engine")."""
    engines, _, _ = first_compiled_job
    base = ["--size", SIZE, "--secret", inputs["secret"], "--backend", "onnxruntime", "--engines-dir", engines]
    out = inputs["root"] / "o2"
    res = run("embed", "--shards", inputs["src"], "--out", out, "--checkpoint", other_checkpoint, *base)
    assert res.exit_code == 0, res.output
    assert f"into {engines / file_sha256(other_checkpoint)[:12]}/" in res.stderr
    for ckpt, out in ((tiny_checkpoint, "o3"), (other_checkpoint, "o4")):
        res = run("embed", "--shards", inputs["src"], "--out", inputs["root"] / out, "--checkpoint", ckpt, *base)
        assert res.exit_code == 0, res.output
        assert "building" not in res.stderr
    names = sorted(p.name for p in engines.iterdir() if p.is_dir())
    assert names == sorted(file_sha256(c)[:12] for c in (tiny_checkpoint, other_checkpoint))


def test_no_attribute_is_set_on_an_engine_after_its_constructor() -> None:
    """Engines are built from their parts (graphs, analytic stages, threshold, build time) by their constructors:
    nothing in the package patches one afterwards (``engine.restore = ...`` was how the stages got there)."""
    found = [
        f"{path.relative_to(REPO)}:{i}: {line.strip()}"
        for path in sorted((REPO / "pipeline").rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bengine\.[a-z_]+ = ", line)
    ]
    assert not found, found


def test_the_engine_class_declares_every_method_the_jobs_call() -> None:
    """Whatever the jobs call on an engine, ``Engine`` (the base of the torch and the compiled engines) declares."""
    called = {
        m.group(1)
        for path in sorted((REPO / "pipeline" / "jobs").rglob("*.py"))
        for m in re.finditer(r"\bengine\.([a-z_]+)\b", path.read_text())
    }
    assert {"embed", "reveal", "reveal_and_detect", "detect_threshold", "info"} <= called
    declared = set(dir(Engine)) | set(Engine.__init__.__code__.co_names)
    assert called <= declared, called - declared
