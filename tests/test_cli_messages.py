"""What the batch commands say to a user (issue 24): the files a job writes, exit codes of usage errors, one-line
errors that name the option and the path, the engine-build progress line, the summary's timing, why a rerun redoes
a shard, Ctrl-C, per-image timings in the results, help texts without measured figures, .gitignore."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from jobkit import job_args, photo_shard, png_bytes, rows, tar_names, tree

from pipeline.cli import main
from pipeline.model.checkpoint import file_sha256

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def run(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def secret(tmp_path, photo_factory) -> Path:
    path = tmp_path / "secret.png"
    path.write_bytes(png_bytes(photo_factory(40, 40, seed=99)))
    return path


@pytest.fixture
def src(tmp_path) -> Path:
    photo_shard(tmp_path / "src" / "s0.tar", 2, seed=0)
    photo_shard(tmp_path / "src" / "s1.tar", 2, seed=1)
    return tmp_path / "src"


def error_text(res) -> str:
    """The error part of a failed command's output, checked to be short and free of internals."""
    text = res.stderr
    assert "Traceback" not in text and "_jobs" not in text and "Errno" not in text, text
    return text


# ---------------------------------------------------------------------------------------------------------------------
# What the quick start writes


def test_samples_job_writes_exactly_the_shards_their_results_and_the_manifest(tmp_path, tiny_checkpoint) -> None:
    """The README's quick start on the shipped samples (two shards): these five files, nothing else."""
    out = tmp_path / "out"
    res = run(
        *job_args(
            "embed", None, out, tiny_checkpoint, SIZE, "--samples", "--secret", REPO / "pipeline/samples/secret.png"
        )
    )
    assert res.exit_code == 0, res.output
    assert tree(out) == {
        "manifest.json",
        "shard-000000.tar",
        "shard-000000.parquet",
        "shard-000001.tar",
        "shard-000001.parquet",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "embed" and manifest["shards"]["done"] == ["shard-000000", "shard-000001"]
    assert manifest["config"]["model_sha256"] == manifest["engine"]["model_sha256"]
    assert manifest["totals"]["images_ok"] == 6 and manifest["totals"]["startup_seconds"] > 0
    assert {"torch", "sris-pipeline"} <= set(manifest["versions"])


# ---------------------------------------------------------------------------------------------------------------------
# Usage errors: exit 2, a message naming the option and the path, nothing written


@pytest.mark.parametrize("command", ["embed", "extract"])
def test_usage_errors_exit_2_and_name_the_option(command, tmp_path, tiny_checkpoint, secret, src) -> None:
    out = tmp_path / "out"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    two = ("--secret", secret, "--secret", secret) if command == "embed" else ("--reference", secret) * 2
    one = ("--secret", secret) if command == "embed" else ()
    cases = [
        (
            job_args(command, src, out, tiny_checkpoint, SIZE, *one, "--backend", "tensorflow"),
            "'tensorflow' is not one of",
        ),
        (job_args(command, src, out, tiny_checkpoint, SIZE, *two), "K=1 secret image(s) per"),
        (
            job_args(command, tmp_path / "nope", out, tiny_checkpoint, SIZE, *one),
            f"--shards {tmp_path / 'nope'}: no such folder",
        ),
        (job_args(command, a_file, out, tiny_checkpoint, SIZE, *one), f"--shards {a_file} is a file"),
        (job_args(command, src, a_file, tiny_checkpoint, SIZE, *one), f"--out {a_file} is a file"),
        (
            job_args(command, src, a_file / "sub", tiny_checkpoint, SIZE, *one),
            f"--out {a_file / 'sub'}: {a_file} is a file",
        ),
        (job_args(command, src, src, tiny_checkpoint, SIZE, *one), "is the --shards folder"),
        (
            job_args(command, src, out, tmp_path / "no.pt", SIZE, *one),
            f"--checkpoint {tmp_path / 'no.pt'}: no such file",
        ),
    ]
    if command == "embed":
        cases += [
            (job_args(command, src, out, tiny_checkpoint, SIZE), "no secret image given"),
            (
                job_args(command, src, out, tiny_checkpoint, SIZE, "--secret", secret, "--secret-ext", "secret.png"),
                "--secret and --secret-ext exclude each other",
            ),
            (
                job_args(command, src, out, tiny_checkpoint, SIZE, "--secret", tmp_path / "no.png"),
                f"--secret {tmp_path / 'no.png'}: no such file",
            ),
        ]
    for args, message in cases:
        res = run(*args)
        assert res.exit_code == 2, (args, res.output)
        assert message in error_text(res), (args, res.stderr)
    assert not out.exists()  # refused before anything was written
    assert tree(src) == {"s0.tar", "s1.tar"}


def test_benchmark_usage_errors_exit_2(tmp_path, tiny_checkpoint) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    base = ["benchmark", "--size", SIZE, "--images", 2, "--checkpoint", tiny_checkpoint]
    res = run(*base, "--backend", "tensorflow")
    assert res.exit_code == 2 and "'tensorflow' is not one of" in error_text(res)
    res = run(*base, "--backend", "torch", "--out", a_file)
    assert res.exit_code == 2 and f"--out {a_file} is a file" in error_text(res)
    res = run("benchmark", "--backend", "torch", "--checkpoint", tmp_path / "no.pt")
    assert res.exit_code == 2 and f"--checkpoint {tmp_path / 'no.pt'}: no such file" in error_text(res)


def test_a_file_that_is_no_checkpoint_gets_one_line(tmp_path, src, secret) -> None:
    """Not torch's paragraph about weights_only: one line naming the option and the file; exit 1."""
    text_file = tmp_path / "notes.pt"
    text_file.write_text("hello")
    pickled = tmp_path / "pickled.pt"
    torch.save({"x": argparse.Namespace(a=1)}, pickled)  # torch.load(weights_only=True) refuses it at length
    plain = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, plain)  # a torch file, but not of this project
    for bad in (text_file, pickled, plain):
        for args in (
            job_args("embed", src, tmp_path / "out", bad, SIZE, "--secret", secret),
            job_args("extract", src, tmp_path / "out", bad, SIZE),
            ["benchmark", "--backend", "torch", "--checkpoint", bad],
            ["build-engines", "--checkpoint", bad, "--out", tmp_path / "engines", "--targets", "onnx"],
        ):
            res = run(*args)
            assert res.exit_code == 1, res.output
            lines = error_text(res).strip().splitlines()
            assert lines == [f"error: --checkpoint {bad}: not an sris-pipeline checkpoint"], lines
        res = run("engines", "--engines-dir", tmp_path / "engines", "--checkpoint", bad)
        assert res.exit_code == 0 and f"--checkpoint {bad}: not an sris-pipeline checkpoint\n" in res.stdout
        assert "weights_only" not in res.output.lower() and "Weights only" not in res.output


def test_engines_commands_refuse_a_missing_checkpoint_with_exit_2(tmp_path) -> None:
    missing = tmp_path / "no.pt"
    for args in (
        ["build-engines", "--checkpoint", missing, "--out", tmp_path / "engines", "--targets", "onnx"],
        ["engines", "--engines-dir", tmp_path / "engines", "--checkpoint", missing],
    ):
        res = run(*args)
        assert res.exit_code == 2 and f"--checkpoint {missing}: no such file" in error_text(res)
    assert not (tmp_path / "engines").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Reruns: which shards are redone and why


def test_rerun_says_which_shards_it_redoes_and_why(tmp_path, tiny_checkpoint, secret, src, photo_factory) -> None:
    out = tmp_path / "out"
    args = job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", secret, "--no-progress")
    assert run(*args).exit_code == 0

    res = run(*args)  # the same settings: nothing redone, nothing said
    assert res.exit_code == 0 and "redone" not in res.output and "2 already done" in res.stdout

    res = run(*args, "--format", "webp")
    assert res.exit_code == 0
    assert res.stderr.splitlines()[:2] == [
        "s0: redone (settings changed: format png -> webp)",
        "s1: redone (settings changed: format png -> webp)",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"]["redone"] == {s: "settings changed: format png -> webp" for s in ("s0", "s1")}

    other = tmp_path / "other.png"
    other.write_bytes(png_bytes(photo_factory(40, 40, seed=5)))
    # another secret (a JPEG quality does not count for WebP output): the secret's hash, shortened
    res = run(
        *job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", other, "--format", "webp", "--jpeg-quality", 80)
    )
    assert re.search(r"^s0: redone \(settings changed: secret images [0-9a-f]{12} -> [0-9a-f]{12}\)$", res.stderr, re.M)

    res = run(*job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", other, "--format", "webp", "--force"))
    assert "s1: redone (--force)" in res.stderr

    (out / "s1.parquet").write_bytes(b"not parquet")
    res = run(*job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", other, "--format", "webp"))
    assert res.stderr.splitlines()[0] == "s1: redone (results unreadable)" and "1 already done" in res.stdout

    (src / "s0.tar").unlink()
    photo_shard(src / "s0.tar", 3, seed=7)
    photo_shard(src / "s2.tar", 1, seed=8)  # a new shard is simply done: not "redone"
    res = run(*job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", other, "--format", "webp"))
    assert res.stderr.splitlines()[0] == "s0: redone (the source shard changed since it was done)"
    assert "s2" not in res.stderr and "shards 2 done, 1 already done" in res.stdout


# ---------------------------------------------------------------------------------------------------------------------
# Engines built on first use: a progress line, and a summary that keeps start-up apart


@pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("onnxruntime", "onnxscript")),
    reason="needs onnxruntime and onnxscript",
)
def test_first_run_says_it_builds_engines_and_the_summary_keeps_startup_apart(
    tmp_path, tiny_checkpoint, secret, src
) -> None:
    engines = tmp_path / "engines"
    args = [
        *job_args("embed", src, tmp_path / "out", tiny_checkpoint, SIZE, "--secret", secret, "--no-progress"),
        "--backend",
        "onnxruntime",
        "--engines-dir",
        engines,
    ]
    res = run(*args)
    assert res.exit_code == 0, res.output
    err = res.stderr.splitlines()
    folder = engines / file_sha256(tiny_checkpoint)[:12]  # the model's own folder in --engines-dir
    assert err[0] == (
        f"building ONNX fp32 engines for {tiny_checkpoint} at {SIZE}x{SIZE} into {folder}/ "
        "(once; about a minute on a small CPU)..."
    )
    assert re.fullmatch(r"engines built in \d+ s", err[1]), err
    summary = res.stdout.strip().splitlines()[-1]
    assert re.search(
        r"s processing, [\d.]+ images/s \(start-up [\d.]+ s not included, engine build \d+ s of it\)", summary
    )

    res = run(*args[:4], tmp_path / "out2", *args[5:])  # built now: no build line, start-up without a build
    assert res.exit_code == 0, res.output
    assert "building" not in res.stderr
    assert re.search(r"\(start-up [\d.]+ s not included\)", res.stdout)


# ---------------------------------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_lists_complete_shards_and_says_how_to_resume(tmp_path, tiny_checkpoint, photo_factory) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for s in range(3):
        photo_shard(src / f"s{s}.tar", 12, seed=s, h=200, w=240)
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photo_factory(32, 32, seed=7)))
    args = job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", secret, "--batch-size", 1, "--workers", 1)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *map(str, args), "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (out / "s0.parquet").exists():  # the first shard is complete: interrupt while the next is written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    complete = sorted(p[: -len(".parquet")] for p in tree(out) if p.endswith(".parquet"))
    if complete == ["s0", "s1", "s2"]:
        pytest.skip("the job finished before the interrupt arrived")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert f"interrupted: {len(complete)} of 3 shards complete in {out}" in stderr
    assert f"completed by this run: {', '.join(complete)}" in stderr
    assert "Run the same command again to resume" in stderr
    assert not [p for p in tree(out) if p.endswith(".partial")]  # the shard being written was discarded

    res = run(*args, "--no-progress")  # the same command resumes: only the rest is done
    assert res.exit_code == 0, res.output
    assert f"{len(complete)} already done" in res.stdout
    for s in range(3):
        assert tar_names(out / f"s{s}.tar") == [f"img{s}_{i:03d}.png" for i in range(12)]


def test_a_shard_committed_as_ctrl_c_came_counts_as_complete(tmp_path, tiny_checkpoint, secret) -> None:
    """Ctrl-C after a shard's results file landed but before the run counted it: the message says it is complete, as
    the rerun will find it (the race the test above can only hit by chance)."""
    from pipeline.io.decode import make_decoder
    from pipeline.jobs.batch import JobSettings
    from pipeline.jobs.embed import EmbedJob
    from pipeline.jobs.runners import LocalRunner
    from pipeline.runtime import load_engine

    for s in range(2):
        photo_shard(tmp_path / "src" / f"s{s}.tar", 3, seed=s, h=64, w=80)
    engine = load_engine("torch", str(tiny_checkpoint), SIZE)
    settings = JobSettings(size=SIZE)

    def job() -> EmbedJob:
        decoder = make_decoder("cpu", 1, settings.max_pixels)
        return EmbedJob(str(tmp_path / "src"), str(tmp_path / "out"), engine, settings, decoder, [secret.read_bytes()])

    done = job()
    done.plan()
    LocalRunner(workers=1, batch_size=3, progress=False).run(done)
    (tmp_path / "out" / "s1.parquet").unlink()  # s1 not complete: its results never landed
    interrupted = job()
    interrupted.todo = list(done.todo)  # as planned before the run
    interrupted.totals.shards_total = len(done.todo)
    interrupted.committing = {"s0", "s1"}  # both were being committed when the interrupt came; nothing was counted
    message = interrupted.interrupted_message()
    assert "interrupted: 1 of 2 shards complete" in message and "completed by this run: s0" in message
    assert "not completed (partial output discarded): s1" in message


# ---------------------------------------------------------------------------------------------------------------------
# Per-image timings


@pytest.mark.parametrize("command", ["embed", "extract"])
def test_decode_and_infer_ms_are_per_image(command, tmp_path, tiny_checkpoint, secret) -> None:
    """decode_ms and infer_ms are the batch's time divided by its images: over a shard they add up to the stages'
    seconds (a batch's figure repeated on each of its 3 images would add up to 3 times as much)."""
    from pipeline.io.decode import make_decoder
    from pipeline.jobs.batch import JobSettings
    from pipeline.jobs.embed import EmbedJob
    from pipeline.jobs.extract import ExtractJob
    from pipeline.jobs.runners import LocalRunner
    from pipeline.runtime import load_engine

    photo_shard(tmp_path / "src" / "s.tar", 9, seed=3, h=64, w=80)
    engine = load_engine("torch", str(tiny_checkpoint), SIZE)
    settings = JobSettings(size=SIZE)
    decoder = make_decoder("cpu", 1, settings.max_pixels)
    if command == "embed":
        job = EmbedJob(str(tmp_path / "src"), str(tmp_path / "out"), engine, settings, decoder, [secret.read_bytes()])
        infer_stages = ("preprocess", "embed", "compose", "verify")
    else:
        job = ExtractJob(str(tmp_path / "src"), str(tmp_path / "out"), engine, settings, decoder)
        infer_stages = ("preprocess", "reveal")
    job.plan()
    LocalRunner(workers=1, batch_size=3, progress=False).run(job)
    r = rows(tmp_path / "out" / "s.parquet")
    assert len(r) == 9 and all(x["status"] == "ok" for x in r)
    stage = job.totals.stage_seconds
    assert sum(x["decode_ms"] for x in r) == pytest.approx(1000 * stage["decode"], rel=1e-6)
    assert sum(x["infer_ms"] for x in r) == pytest.approx(1000 * sum(stage[s] for s in infer_stages), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Help texts and .gitignore

# A measured figure: a number with a unit that a new model, machine or version changes.
MEASURED = re.compile(r"\d+(\.\d+)?\s*(dB|images/s|img/s|MFLOPs|GFLOPs|ms\b|minutes?\b|min\b|s\b)|about a minute")


@pytest.mark.parametrize("name", ["embed", "extract", "benchmark", "engines", "build-engines", "evaluate"])
def test_help_texts_hold_no_measured_figures(name) -> None:
    command = main.get_command(click.Context(main), name)
    helps = [(p.name, p.help or "") for p in command.params if isinstance(p, click.Option)]
    assert helps
    bad = [(n, h) for n, h in helps if MEASURED.search(h)]
    assert not bad, bad
    assert not MEASURED.search(command.help or ""), command.help


def test_quick_start_outputs_are_ignored_by_git() -> None:
    lines = (REPO / ".gitignore").read_text().splitlines()
    assert "/out/" in lines and "/revealed/" in lines


def test_a_secret_that_is_not_an_image_is_a_usage_error(tmp_path, src, tiny_checkpoint) -> None:
    """A --secret or --reference file that is not an image (or is cut short) is a wrong command line: exit 2 with
    the option and the path, before any engine is loaded or anything written."""
    notes, cut = tmp_path / "notes.png", tmp_path / "cut.png"
    notes.write_text("not a picture")
    cut.write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8) + 90)[:60])
    out = tmp_path / "out"
    for args, message in (
        (job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", notes), f"--secret {notes}: not an image"),
        (job_args("embed", src, out, tiny_checkpoint, SIZE, "--secret", cut), f"--secret {cut}: not a usable image"),
        (job_args("extract", src, out, tiny_checkpoint, SIZE, "--reference", notes), f"--reference {notes}: not an"),
    ):
        res = run(*args)
        assert res.exit_code == 2, res.output
        assert message in error_text(res)
    assert not out.exists()


@pytest.mark.parametrize("command", ["embed", "extract", "validate", "distill-score", "benchmark"])
def test_an_unknown_model_name_lists_the_shipped_ones(tmp_path, src, secret, command, monkeypatch) -> None:
    """``--checkpoint k3`` (no such file, no such shipped model) says so and names the shipped models; a path
    that does not exist is only said to be missing."""
    monkeypatch.chdir(tmp_path)
    args = {
        "embed": job_args("embed", src, tmp_path / "out", "k3", SIZE, "--secret", secret),
        "extract": job_args("extract", src, tmp_path / "out", "k3", SIZE),
        "validate": ["validate", "--data", src, "--checkpoint", "k3"],
        "distill-score": ["distill-score", "--data", src, "--out", tmp_path / "o.pt", "--checkpoint", "k3"],
        "benchmark": ["benchmark", "--checkpoint", "k3"],
    }[command]
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert "--checkpoint k3: no such file, nor a shipped model (shipped: k1, k2, k4, k1-analog)" in error_text(res)
    res = run(*[a if a != "k3" else tmp_path / "k3.pt" for a in args])
    assert res.exit_code == 2 and error_text(res).strip().endswith(f"--checkpoint {tmp_path / 'k3.pt'}: no such file")


@pytest.mark.parametrize("command", ["embed", "extract"])
def test_the_progress_bar_counts_the_shards_of_the_job(tmp_path, src, secret, tiny_checkpoint, command) -> None:
    """The job knows its shards: the bar shows them as its total, with the images and images/s so far."""
    extra = ["--secret", secret] if command == "embed" else []
    res = run(*job_args(command, src, tmp_path / "out", tiny_checkpoint, SIZE, *extra, "--progress"))
    assert res.exit_code == 0, res.output
    lines = res.stderr.replace("\r", "\n").splitlines()
    assert any(re.search(rf"{command}:   0%\|.*\| 0\.0/2 shards \[", ln) for ln in lines), lines
    assert any(re.search(rf"{command}: 100%\|.*\| 2\.0/2 shards \[.*<00:00, 4 img, [\d.]+ img/s\]", ln) for ln in lines)


def test_the_progress_bar_moves_within_a_shard_and_gives_an_eta() -> None:
    """A batch moves the bar by the part of its shard it was read from (bytes of a tar, files of a folder), so a
    long shard shows progress and an estimate of the time left before it ends."""
    from pipeline.io.listing import ShardRef
    from pipeline.jobs.batch import Sample
    from pipeline.jobs.runners import JobProgress, shard_share

    tar = ShardRef("a", "/a.tar", "tar", "f", size=1000)
    folder = ShardRef("b", "/b", "folder", "f", files=("1.jpg", "2.jpg", "3.jpg", "4.jpg"))
    batch = [Sample("k1", {}, data=b"x" * 200), Sample("k2", {}, data=b"x" * 50)]
    assert shard_share(tar, batch) == 0.25 and shard_share(folder, batch) == 0.5
    assert shard_share(ShardRef("c", "s3://c.tar", "tar", "f"), batch) == 0.0  # size unknown: moves at the end
    bar = JobProgress("embed", 2, True)
    bar.start_shard()
    time.sleep(0.2)
    bar.add(0.5, 3)
    assert re.search(r"\| 0\.5/2 shards \[00:00<00:0\d, 3 img, [\d.]+ img/s\]", str(bar.bar)), str(bar.bar)
    bar.add(0.9, 3)  # a share estimate never completes a shard: its commit does
    assert bar.bar.n < 1
    bar.end_shard()
    assert bar.bar.n == pytest.approx(1.0)
    bar.close()


def test_jobs_take_a_shipped_model_by_name(tmp_path, monkeypatch) -> None:
    """``--checkpoint k2`` passes the jobs' existence check from any folder (it names the package's file); a missing
    path is still a usage error with a one-line message."""
    from pipeline.runtime.cli import check_checkpoint_exists, checkpoint_message

    monkeypatch.chdir(tmp_path)
    check_checkpoint_exists("k2")
    with pytest.raises(click.UsageError, match=r"--checkpoint nothing\.pt: no such file"):
        check_checkpoint_exists("nothing.pt")
    assert checkpoint_message("nothing.pt", RuntimeError("x")) == "--checkpoint nothing.pt: no such file"
    assert "not an sris-pipeline checkpoint" in checkpoint_message("k2", RuntimeError("x"))
