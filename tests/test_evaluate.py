"""End to end: ``python -m pipeline evaluate --quick`` on a few synthetic photos with real (untrained) checkpoints.

No quality assertions: the models are untrained. We check that every table, figure and row is there.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.evaluate.run import report_attacks


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 decodable photos of different shapes and formats, one broken file, sorted so --quick keeps 7 good ones."""
    from conftest import synthetic_photo

    d = tmp_path_factory.mktemp("photos")
    for i in range(8):
        img = Image.fromarray(synthetic_photo(70 + 9 * i, 96 - 3 * i, seed=i))
        img.save(d / (f"p{i}.jpg" if i % 2 else f"p{i}.png"), quality=95)
    (d / "p3-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return d


@pytest.fixture(scope="module")
def k2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = build_model(get_config("tiny", num_secrets=2))
    return save_checkpoint(model, tmp_path_factory.mktemp("k2") / "k2.pt", meta={"name": "tiny K=2"})


def _invoke(*args: str):
    return CliRunner().invoke(main, ["evaluate", *args], catch_exceptions=False)


def test_evaluate_quick_writes_every_table(
    photo_dir: Path, tiny_checkpoint: Path, k2_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    res = _invoke(
        "--data",
        str(photo_dir),
        "--out",
        str(out),
        "--checkpoint",
        f"first={tiny_checkpoint}",
        "--checkpoint",
        str(tiny_checkpoint),
        "--capacity-checkpoint",
        f"2={k2_checkpoint}",
        "--size",
        "64",
        "--quick",
        "--stega-tile",
        "32",
        "--xunet-epochs",
        "2",
        "--threads",
        "1",
    )
    assert res.exit_code == 0, res.output
    for name in (
        "report.md",
        "run.json",
        "robustness.png",
        "quality.parquet",
        "security.parquet",
        "robustness.parquet",
        "capacity.parquet",
    ):
        assert (out / name).is_file(), name
    grids = sorted(p.name for p in out.glob("grid_*.png"))
    assert len(grids) == 4  # --quick: 2 sample images per model

    labels = {"first", "SRIS-Net"}  # the second checkpoint is named from its config
    n_img, n_att = 7, len(report_attacks())  # --quick keeps the first 8 files; the broken one is skipped
    quality = pq.read_table(out / "quality.parquet").to_pylist()
    assert len(quality) == 2 * n_img * 2 and {r["model"] for r in quality} == labels
    assert {r["pair"] for r in quality} == {"cover/stego", "secret/recovery"}
    assert "p7.jpg" not in {r["image"] for r in quality} and "p3-broken.jpg" not in {r["image"] for r in quality}
    assert all(0 <= r["ssim"] <= 1 and 0 <= r["ms_ssim"] <= 1 and r["mse"] >= 0 for r in quality)

    robustness = pq.read_table(out / "robustness.parquet").to_pylist()
    assert len(robustness) == 2 * n_img * n_att
    attacks = [r["attack"] for r in robustness[: n_img * n_att : n_img]]
    assert attacks == [a.name for a in report_attacks()]
    assert attacks[-14:] == ["jpeg90", "jpeg75", "jpeg50", "webp80", "resize0.5", "resize0.75"] + [
        f"shift{k}" for k in range(1, 8)
    ] + ["crop10"]
    assert "jpeg 90" not in attacks and "sharpen" in attacks  # the published jpeg90 stands for the old extra
    assert all(r["mse"] > 0 and 0 <= r["ssim"] <= 1 for r in robustness if r["attack"].startswith("shift"))

    security = pq.read_table(out / "security.parquet").to_pylist()
    test_photos, tiles = n_img - n_img // 2, 4
    assert len(security) == 2 * 3 * 5 * test_photos * tiles * 2
    assert {r["detector"] for r in security} == {"srm-fld", "xunet", "wavelet-fld"}
    assert {r["split"] for r in security} == set(range(5))

    capacity = pq.read_table(out / "capacity.parquet").to_pylist()
    assert len(capacity) == n_img * (1 + 2) and {r["k"] for r in capacity} == {2}

    report = (out / "report.md").read_text()
    for text in (
        "43.55",
        "0.9990",
        "39.78",
        "| first |",
        "| SRIS-Net |",
        "P_E srm-fld",
        "CSR",
        "not evaluated: no `--capacity-checkpoint 3=PATH` given",
        "| 2 | tiny K=2 |",
        "p3-broken.jpg",
        "MS-SSIM: 3 scale(s)",
        "robustness.png",
        "| shift7 |",
        "| webp80 |",
        "published-image bar (dB)",
        ">= 24 |",
        "INTER_AREA",
        grids[0],
    ):
        assert text in report, text


def test_evaluate_refuses_bad_input_clearly(
    photo_dir: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "r")
    res = _invoke("--data", str(tmp_path / "nowhere"), "--out", out, "--checkpoint", str(tiny_checkpoint))
    assert res.exit_code == 1 and "data not found" in res.output
    res = _invoke("--data", str(photo_dir), "--out", out, "--checkpoint", str(tiny_checkpoint), "--size", "66")
    assert res.exit_code == 1 and "not a multiple of" in res.output
    res = _invoke(
        "--data",
        str(photo_dir),
        "--out",
        out,
        "--checkpoint",
        str(tiny_checkpoint),
        "--capacity-checkpoint",
        f"2={tiny_checkpoint}",
    )
    assert res.exit_code == 1 and "hides 1 secret" in res.output
    res = _invoke("--data", str(photo_dir), "--out", out, "--capacity-checkpoint", "5=x.pt")
    assert res.exit_code == 2 and "K in 2, 3, 4" in res.output
    res = _invoke("--data", str(photo_dir), "--out", out, "--checkpoint", str(tmp_path / "missing.pt"))
    assert res.exit_code == 1 and "checkpoint not found" in res.output
    monkeypatch.setattr("pipeline.evaluate.run.default_checkpoint_path", lambda: tmp_path / "sris_fast.pt")
    res = _invoke("--data", str(photo_dir), "--out", out)
    assert res.exit_code == 1 and "does not exist yet" in res.output
    assert not (tmp_path / "r" / "report.md").exists()  # nothing half-written
