"""benchmarks/job_quality.py end to end: real photos on disk, the real job code, an untrained tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner
from PIL import Image

from pipeline.core.photos import is_validation

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("job_quality", REPO / "benchmarks" / "job_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_quality_runs_the_held_out_photos_through_the_job_path(tmp_path, photo_factory, tiny_checkpoint) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    val = [f"p{i:03d}.png" for i in range(200) if is_validation(f"p{i:03d}.png", 0.2)][:3]
    for i, name in enumerate([*val, "train_only.png"]):
        Image.fromarray(photo_factory(90 + 8 * i, 120, seed=i)).save(folder / name)
    out = tmp_path / "out"
    script = _load_script()
    names, photos = script.held_out_photos(str(folder))
    assert sorted(names) == sorted(val)
    for name, photo in zip(names, photos, strict=True):  # the photos as they are on disk (not rescaled, not inverted)
        assert np.array_equal(photo, np.asarray(Image.open(folder / name)))
    result = CliRunner().invoke(
        script.main,
        [
            "--data",
            str(folder),
            "--checkpoint",
            str(tiny_checkpoint),
            "--size",
            "64",
            "--megapixels",
            "0.05",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = pq.read_table(out / "job_quality.parquet").to_pylist()
    assert sorted(r["cover"] for r in rows) == sorted(val)  # held-out photos only, one row each
    for r in rows:
        assert abs(r["megapixels job"] - 0.05) < 0.002 and r["megapixels network size"] == 64 * 64 / 1e6
        assert all(np.isfinite(r[k]) for k in r if k.startswith("psnr"))
    assert "mean over photos" in result.output
    # --upsample exact (the default): the receiver reads at 0.05 MP what the network made at 64 px
    gap = np.mean([r["psnr_secret job"] - r["psnr_secret network size"] for r in rows])
    assert abs(gap) < 0.5
