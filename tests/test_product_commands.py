"""The product steps that were scripts, as commands: ``calibrate-detection`` writes a threshold into a checkpoint,
``average-checkpoints`` writes a weighted mean of checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.model import build_model, get_config
from pipeline.model.checkpoint import load_model, read_checkpoint, save_checkpoint, shipped_path


@pytest.fixture
def photo_folder(tmp_path: Path, photo_factory) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(photo_factory(80, 96, seed=i)).save(folder / f"p{i}.png")
    return folder


@pytest.mark.slow
def test_calibrate_detection_writes_the_threshold_into_the_checkpoint(tmp_path: Path, photo_folder: Path) -> None:
    ckpt = shutil.copy(shipped_path("k1"), tmp_path / "model.pt")
    before = read_checkpoint(ckpt)
    out = tmp_path / "scores" / "detection.parquet"
    args = ["calibrate-detection", "--data", str(photo_folder), "--checkpoint", str(ckpt), "--crops", "0"]
    res = CliRunner().invoke(main, [*args, "--size", "64", "--write-threshold", "--out", str(out)])
    assert res.exit_code == 0, res.output
    scores = pq.read_table(out).to_pylist()
    record = load_model(ckpt).checkpoint_meta["detection"]
    unmarked = [r["score"] for r in scores if r["kind"] == "unmarked"]
    assert len(unmarked) == record["unmarked_images"] == 4 * 20  # 4 centre crops, as they are and after 19 conditions
    assert max(unmarked) < record["threshold"] <= max(unmarked) + 0.5 and record["threshold"] % 0.5 == 0
    marked = [r["score"] for r in scores if r["kind"] == "marked" and r["condition"] == "clean"]
    assert record["true_positive_rate"]["clean"] == sum(s >= record["threshold"] for s in marked) / len(marked)
    assert record["measured_by"] == "python -m pipeline calibrate-detection" and out.with_suffix(".png").is_file()
    after = read_checkpoint(ckpt)
    assert after["config"] == before["config"]
    assert all(torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())


def _tiny(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(build_model(get_config("tiny")), path)


def test_average_checkpoints_writes_the_weighted_mean(tmp_path: Path) -> None:
    a, b = _tiny(tmp_path / "a.pt", 0), _tiny(tmp_path / "b.pt", 1)
    out = tmp_path / "mean.pt"
    res = CliRunner().invoke(main, ["average-checkpoints", str(out), f"0.25={a}", f"0.75={b}"])
    assert res.exit_code == 0, res.output
    sa, sb, sm = (read_checkpoint(p)["state_dict"] for p in (a, b, out))
    for k, v in sm.items():
        if v.is_floating_point():
            want = 0.25 * sa[k].float() + 0.75 * sb[k].float()
            assert torch.allclose(v.float(), want, atol=2e-3, rtol=1e-3), k
    assert [s["weight"] for s in read_checkpoint(out)["meta"]["averaged"]] == [0.25, 0.75]


@pytest.mark.parametrize("spec", ["x=a.pt", "0.5", "-1=a.pt"])
def test_average_checkpoints_refuses_a_bad_weight(tmp_path: Path, spec: str) -> None:
    res = CliRunner().invoke(main, ["average-checkpoints", str(tmp_path / "o.pt"), spec])
    assert res.exit_code == 2 and "WEIGHT=CHECKPOINT" in res.output
