"""The embed job's engine when no network writes (``pipeline/runtime/digital_engine.py``): the model from its card,
the layer in NumPy, and no torch import unless an image needs the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from digital_kit import sample_photos
from jobkit import make_tar, png_bytes, rows

from pipeline.model.shipped import SHIPPED, shipped_path
from pipeline.runtime.digital_engine import network_free_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_card_gives_the_checkpoints_config(name: str) -> None:
    from pipeline.model.checkpoint import load_model

    model = load_model(name)
    found = network_free_model(name, "digital", 256)
    if not model.config.digital.enabled:
        assert found is None
        return
    assert found is not None and found.config == model.config
    assert found.sha256 == model.checkpoint_sha256 and found.name == model.model_name
    writes = model.config.digital.analog_gain > 0
    assert (network_free_model(name, "all", 256) is None) == writes  # the network writes: the job needs it
    assert network_free_model(name, "digital", 512) is None  # another grid: the torch path resizes to the layer's


def test_weights_the_card_does_not_name_are_left_to_the_checked_loader(tmp_path: Path) -> None:
    src = shipped_path("k1")
    copy = tmp_path / src.name
    copy.write_bytes(src.read_bytes() + b"\0")
    copy.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    assert network_free_model(str(copy), "all", 256) is None
    assert network_free_model(str(tmp_path / "missing.pt"), "all", 256) is None


# Runs the CLI with every import of torch refused: the job must finish without it.
NO_TORCH = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch was imported by a job that needs no network")
sys.meta_path.insert(0, Refuse())
sys.argv = ["pipeline"] + sys.argv[1:]
runpy.run_module("pipeline", run_name="__main__")
"""


def test_the_default_embed_job_at_the_grid_size_never_imports_torch(tmp_path: Path) -> None:
    """No torch import from start to exit; the same levels and figures as the job on the torch engine."""
    photos = sample_photos()
    make_tar(tmp_path / "src" / "s.tar", [(f"p{i}.png", png_bytes(p)) for i, p in enumerate(photos[1:4])])
    (tmp_path / "secret.png").write_bytes(png_bytes(photos[0]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    found = {}
    for how, launch in (("numpy", ["-c", NO_TORCH]), ("torch", ["-m", "pipeline"])):
        cmd = [sys.executable, *launch, "embed", "--shards", str(tmp_path / "src"), "--out", str(tmp_path / how)]
        cmd += ["--secret", str(tmp_path / "secret.png"), "--no-progress"]
        cmd += ["--backend", "torch"] if how == "torch" else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        found[how] = rows(tmp_path / how / "s.parquet")
    fast, ref = found["numpy"], found["torch"]
    assert [x["status"] for x in fast] == ["ok"] * 3
    assert [x["layer"] for x in fast] == [x["layer"] for x in ref] and "top" in [x["layer"] for x in fast]
    for a, b in zip(fast, ref, strict=True):
        assert a["psnr_secret"] == pytest.approx(b["psnr_secret"], abs=1e-9)
        assert a["psnr_cover"] == pytest.approx(b["psnr_cover"], abs=0.05)
        assert a["ssim_cover"] == pytest.approx(b["ssim_cover"], abs=1e-3)
    manifest = json.loads((tmp_path / "numpy" / "manifest.json").read_text())
    assert manifest["engine"]["backend"] == "torch" and manifest["model"]["name"] == "k1", manifest["engine"]


def test_the_network_loads_on_first_use(tmp_path: Path) -> None:
    """The engine's network (an API caller's reveal; the jobs never reveal with a network that wrote nothing) is the
    torch engine of the same weights, loaded on first use."""
    from pipeline.runtime.digital_engine import DigitalEngine

    engine = DigitalEngine(network_free_model(None, "all", 256), 256)
    assert not engine.network_loaded and engine.digital and engine.cpu_digital is not None
    out = engine.reveal(np.full((1, 3, 256, 256), 0.5, np.float32), aligned=True)
    assert engine.network_loaded and out.shape == (1, 3, 256, 256)
    assert engine.info.model_sha256 == engine.network().info.model_sha256
