"""The benchmark command on a tiny setup: every stage measured, table printed, Parquet + PNG written, and the
memory check runs the real job in a subprocess and reports its peak RSS."""

from __future__ import annotations

import pyarrow.parquet as pq
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.jobs.benchmark import STAGES, dims_for


def test_dims() -> None:
    assert dims_for(None, 256) == (256, 256) and dims_for(0, 256) == (256, 256)
    h, w = dims_for(1, 256)
    assert abs(h * w - 1e6) < 3e3 and abs(w / h - 4 / 3) < 0.01


def test_benchmark_command(tmp_path, tiny_checkpoint) -> None:
    out = tmp_path / "results"
    args = [
        "benchmark",
        "--size",
        "32",
        "--images",
        "3",
        "--batch-size",
        "2",
        "--checkpoint",
        str(tiny_checkpoint),
        "--backend",
        "torch",
        "--decoder",
        "cpu",
        "--megapixels",
        "0.01",
        "--memory-check",
        "0.2",
        "--memory-images",
        "1",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "end2end" in res.output and "memory check: 1 photos" in res.output
    (parquet,) = out.glob("benchmark-*.parquet")
    assert (out / parquet.name.replace(".parquet", ".png")).stat().st_size > 1000
    rows = pq.read_table(parquet).to_pylist()
    stages = [r for r in rows if r["kind"] == "stages"]
    assert [(r["width"], r["height"]) for r in stages] == [(115, 86)]
    for r in stages:
        assert all(r[f"{s}_ips"] > 0 for s in STAGES) and r["end_to_end_ips"] > 0 and r["bound_by"] in STAGES
    (mem,) = [r for r in rows if r["kind"] == "memory"]
    assert 50 < mem["peak_rss_mb"] < 4096 and mem["images"] == 1


def test_benchmark_writes_under_the_working_folder_and_names_dalis_cpu_mode(
    tmp_path, tiny_checkpoint, monkeypatch
) -> None:
    """By default the results go to ./benchmark-results (never into the package's repository), and DALI without a
    GPU is measured as what it is: its CPU-only mode, "dali-cpu"."""
    import torch

    from pipeline.io.decode import dali_available

    monkeypatch.chdir(tmp_path)
    dali = dali_available()
    decoders = ["--decoder", "cpu", *(["--decoder", "dali"] if dali else [])]
    args = ["benchmark", "--size", "32", "--images", "2", "--batch-size", "2", "--backend", "torch", *decoders]
    res = CliRunner().invoke(main, [*args, "--checkpoint", str(tiny_checkpoint)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (parquet,) = (tmp_path / "benchmark-results").glob("benchmark-*.parquet")
    names = [r["decoder"] for r in pq.read_table(parquet).to_pylist()]
    gpu = torch.cuda.is_available()
    assert names == ["cpu", *(["dali" if gpu else "dali-cpu"] if dali else [])]
    if dali and not gpu:
        assert "dali-cpu" in res.output
