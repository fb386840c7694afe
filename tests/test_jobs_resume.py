"""SIGKILL at any moment, then rerun: every image processed exactly once (real subprocesses, real kills)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from jobkit import job_args, photo_shard, png_bytes, rows, tar_names, tree

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
SHARDS, PER_SHARD = 3, 10


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _kill_when(proc: subprocess.Popen, dst: Path, ready, timeout: float = 240) -> bool:
    """SIGKILL ``proc`` as soon as ``ready(files in dst)`` holds; False if the job ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        files = tree(dst) if dst.exists() else set()
        if ready(dst, files):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the job did not reach the kill point in time")


def _partial_with_members(dst: Path, files: set[str], after_done: int) -> bool:
    """A shard is being written (its hidden partial tar holds data) after ``after_done`` shards completed."""
    done = sum(1 for f in files if f.endswith(".parquet"))
    partials = [f for f in files if f.endswith(".partial") and ".tar." in f]
    return done >= after_done and any((dst / p).exists() and (dst / p).stat().st_size > 0 for p in partials)


def test_sigkill_mid_shard_then_rerun_exactly_once(tmp_path, tiny_checkpoint, photo_factory) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    for s in range(SHARDS):
        photo_shard(src / f"s{s}.tar", PER_SHARD, seed=s, h=160, w=200)
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photo_factory(32, 32, seed=7)))
    extra = ("--secret", secret, "--batch-size", 1, "--workers", 1, "--no-progress")
    args = job_args("embed", src, dst, tiny_checkpoint, SIZE, *extra)

    # Kill 1: in the middle of the first shard. Kill 2: in the middle of a later shard, after one completed.
    killed = [_kill_when(_start(args), dst, lambda d, f: _partial_with_members(d, f, 0))]
    killed.append(_kill_when(_start(args), dst, lambda d, f: _partial_with_members(d, f, 1)))
    assert any(killed), "neither run could be killed mid-shard"

    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "already done" in res.output
    assert not [f for f in tree(dst) if f.endswith(".partial")]
    for s in range(SHARDS):
        expected = [f"img{s}_{i:03d}" for i in range(PER_SHARD)]
        names = tar_names(dst / f"s{s}.tar")
        assert names == [f"{k}.png" for k in expected]  # every image once, in order, none twice
        r = rows(dst / f"s{s}.parquet")
        assert [x["key"] for x in r] == expected and all(x["status"] == "ok" for x in r)
        assert len({x["job_id"] for x in r}) == 1  # a shard is never a mix of two runs
