"""The Ray runner on a real local Ray cluster (2 CPUs) against the local runner: the same output shards and results
rows for the same input shards, and a killed Ray run resumes exactly as a killed local run does.

The local reference is the production command (``python -m pipeline embed``, in-process); the Ray runs use the real
Ray Data actor pool with the same real tiny model. A few pure checks (actor pool sizing, a worker refusing another
model) need no cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import synthetic_photo
from jobkit import jpeg_bytes, make_tar, photo_shard, png_bytes, rows, tree

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'sris-pipeline[ray]')")
pytest.importorskip("ray.data", reason="ray is installed without Ray Data (pip install 'ray[data]')")

from pipeline.cli import main  # noqa: E402
from pipeline.io.decode import make_decoder  # noqa: E402
from pipeline.io.results import META_KEY  # noqa: E402
from pipeline.jobs.batch import JobSettings  # noqa: E402
from pipeline.jobs.common import JobError  # noqa: E402
from pipeline.jobs.embed import EmbedJob  # noqa: E402
from pipeline.jobs.ray_runner import EngineSpec, RayRunner, attach_job, detach_job  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE, BATCH = 32, 3
SHARDS, PER_SHARD = 5, 6
# Columns that differ between any two runs, local or not: per-stage timings, the run's id and the row's timestamp.
VOLATILE = {"decode_ms", "infer_ms", "encode_ms", "created_at", "job_id"}


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: shards, the local reference, the cluster


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """SHARDS shards of PER_SHARD photos; shard 1 also holds an RGBA PNG, a JSON member and a broken image."""
    root = tmp_path_factory.mktemp("ray-inputs")
    src = root / "src"
    for s in range(SHARDS):
        photo_shard(src / f"s{s}.tar", PER_SHARD, seed=s, h=120, w=150)
    rgba = synthetic_photo(30, 44, seed=5, channels=4)
    make_tar(
        src / "s1.tar",
        [
            ("a.png", png_bytes(rgba)),
            ("a.json", b'{"caption": "x"}'),
            ("b.jpg", b"not a jpeg at all"),
            *[(f"c{i}.jpg", jpeg_bytes(90, 70, seed=40 + i)) for i in range(PER_SHARD)],
        ],
    )
    secret = root / "secret.png"
    secret.write_bytes(png_bytes(synthetic_photo(40, 40, seed=99)))
    return {"src": src, "secret": secret}


@pytest.fixture(scope="module")
def local_out(tmp_path_factory, inputs, tiny_checkpoint) -> Path:
    """What the production command writes with the local runner."""
    dst = tmp_path_factory.mktemp("ray-local") / "out"
    args = [
        "embed",
        "--shards",
        inputs["src"],
        "--out",
        dst,
        "--secret",
        inputs["secret"],
        "--checkpoint",
        tiny_checkpoint,
        "--size",
        SIZE,
        "--backend",
        "torch",
        "--decoder",
        "cpu",
        "--batch-size",
        BATCH,
        "--workers",
        1,
        "--no-progress",
    ]
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 3, res.output  # the broken member of s1 is an error row; everything else is ok
    return dst


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for this module, shut down after it."""
    context = ray.init(num_cpus=2, include_dashboard=False)
    yield context
    ray.shutdown()


def spec_for(ckpt: Path) -> EngineSpec:
    return EngineSpec(backend="torch", checkpoint=str(ckpt), size=SIZE)


def planned_job(inputs: dict[str, Path], dst: Path, ckpt: Path) -> EmbedJob:
    """The job as the CLI builds it for the Ray runner: a CPU planning engine, the workers load their own."""
    settings = JobSettings(size=SIZE)
    job = EmbedJob(
        str(inputs["src"]),
        str(dst),
        spec_for(ckpt).planning_engine(),
        settings,
        make_decoder("cpu", 1, settings.max_pixels),
        secrets=[inputs["secret"].read_bytes()],
    )
    job.plan()
    return job


# ---------------------------------------------------------------------------------------------------------------------
# Comparison helpers


def tar_entries(path: Path) -> bytes:
    """The whole output shard: runners must produce byte-identical files (members, headers and order)."""
    return path.read_bytes()


def stable_rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows(path)]


def footer(path: Path) -> dict:
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_metadata(path).metadata[META_KEY])
    meta.pop("job_id")
    return meta


def assert_same_outputs(local: Path, other: Path) -> None:
    """The same files (manifests aside), the same tar members byte for byte, the same rows and footers."""

    def files(d: Path) -> set[str]:
        return tree(d) - {"manifest.json"}

    assert files(other) == files(local) == {f"s{s}.{ext}" for s in range(SHARDS) for ext in ("tar", "parquet")}
    for s in range(SHARDS):
        assert tar_entries(other / f"s{s}.tar") == tar_entries(local / f"s{s}.tar"), f"s{s}.tar differs"
        assert stable_rows(other / f"s{s}.parquet") == stable_rows(local / f"s{s}.parquet"), f"s{s} rows differ"
        assert footer(other / f"s{s}.parquet") == footer(local / f"s{s}.parquet")


def only_manifest(dst: Path) -> dict:
    return json.loads((dst / "manifest.json").read_text())


# ---------------------------------------------------------------------------------------------------------------------
# On the cluster


def test_ray_outputs_match_local_runner(tmp_path, inputs, local_out, tiny_checkpoint, ray_cluster) -> None:
    dst = tmp_path / "ray-out"
    job = planned_job(inputs, dst, tiny_checkpoint)
    results = RayRunner(spec_for(tiny_checkpoint), decoder="cpu", batch_size=BATCH, progress=False).run(job)
    job.write_manifest()

    assert sorted(r.name for r in results) == [f"s{s}" for s in range(SHARDS)]
    assert not any(r.failed for r in results)
    assert_same_outputs(local_out, dst)
    assert not [p for p in tree(dst) if p.endswith(".partial")]

    ref, mine = only_manifest(local_out)["totals"], only_manifest(dst)["totals"]
    for key in ("images_ok", "images_failed", "members_skipped", "shards_done", "shards_total"):
        assert mine[key] == ref[key], key
    assert mine["images_failed"] == 1 and mine["members_skipped"] == 1
    for key in ("psnr_cover", "psnr_secret"):  # means of the same values, summed in another order
        assert mine[key] == pytest.approx(ref[key]), key
    assert job.totals.exit_code() == 3  # some images failed, as with the local runner
    info = job.runner_info
    assert info["runner"] == "ray" and info["actors"] == 2 and sum(r["shards"] for r in info["ran"]) == SHARDS
    assert {r["engine"]["backend"] for r in info["ran"]} == {"torch"} and {r["decoder"] for r in info["ran"]} == {"cpu"}


RAY_DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipeline.io.decode import make_decoder
    from pipeline.jobs.batch import JobSettings
    from pipeline.jobs.embed import EmbedJob
    from pipeline.jobs.ray_runner import EngineSpec, RayRunner

    src, dst, secret, ckpt, address = sys.argv[1:6]
    spec = EngineSpec(backend="torch", checkpoint=ckpt, size={size})
    settings = JobSettings(size={size})
    job = EmbedJob(src, dst, spec.planning_engine(), settings, make_decoder("cpu", 1, settings.max_pixels),
                   secrets=[Path(secret).read_bytes()])
    job.plan()
    RayRunner(spec, address=address, actors=1, decoder="cpu", batch_size={batch}, progress=False).run(job)
    """
)


def _kill_after_first_shard(proc: subprocess.Popen, dst: Path, log: Path, timeout: float = 300) -> int:
    """SIGKILL the driver as soon as one shard is committed (and before all are); returns how many were."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(list(dst.glob("*.parquet"))) if dst.exists() else 0
        if done >= 1:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert done < SHARDS, "the Ray run finished before it could be killed"
            return done
        if proc.poll() is not None:
            raise AssertionError(f"the Ray driver ended before any shard was done: {log.read_text()[-3000:]}")
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"the Ray driver did not complete a shard in time: {log.read_text()[-3000:]}")


def _wait_for_idle_cluster(timeout: float = 120) -> None:
    """The killed driver's actors die with it; wait until their CPUs are back, so nothing still writes."""
    deadline = time.monotonic() + timeout
    total = ray.cluster_resources().get("CPU")
    while ray.available_resources().get("CPU") != total:
        assert time.monotonic() < deadline, "the killed job's actors still hold the cluster's CPUs"
        time.sleep(0.2)


def test_killed_ray_run_resumes_only_missing_shards(tmp_path, inputs, local_out, tiny_checkpoint, ray_cluster) -> None:
    dst, log = tmp_path / "ray-out", tmp_path / "driver.log"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    script = RAY_DRIVER.format(size=SIZE, batch=BATCH)
    args = [inputs["src"], dst, inputs["secret"], tiny_checkpoint, ray_cluster.address_info["address"]]
    # A real driver process on the test's cluster, one actor: killed as soon as its first shard is committed. It has
    # then handed out at most one more shard (one task in flight per actor), so some shards are always left to do.
    with log.open("w") as err:  # a file, not a pipe: Ray's logs would fill a pipe and block the driver
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *map(str, args)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        _kill_after_first_shard(proc, dst, log)
    _wait_for_idle_cluster()

    done_before = {p.stem: (p.read_bytes(), rows(p)[0]["job_id"]) for p in dst.glob("*.parquet")}
    assert 1 <= len(done_before) < SHARDS

    job = planned_job(inputs, dst, tiny_checkpoint)
    assert sorted(s.name for s in job.already_done) == sorted(done_before)
    results = RayRunner(spec_for(tiny_checkpoint), decoder="cpu", batch_size=BATCH, progress=False).run(job)

    assert sorted(r.name for r in results) == sorted(f"s{s}" for s in range(SHARDS) if f"s{s}" not in done_before)
    assert job.totals.shards_already_done == len(done_before)
    for name, (data, killed_job) in done_before.items():  # completed shards were left alone, not redone
        assert (dst / f"{name}.parquet").read_bytes() == data and killed_job != job.job_id
    for r in results:
        assert {x["job_id"] for x in rows(dst / f"{r.name}.parquet")} == {job.job_id}  # never a mix of two runs
    assert not [p for p in tree(dst) if p.endswith(".partial")]  # the killed attempt's temporary files are gone
    assert_same_outputs(local_out, dst)


# ---------------------------------------------------------------------------------------------------------------------
# Without a cluster


def test_actor_pool_sizing(tiny_checkpoint) -> None:
    cpu_spec = EngineSpec(backend="openvino", checkpoint=str(tiny_checkpoint), size=SIZE)
    gpu_spec = EngineSpec(backend="auto", checkpoint=str(tiny_checkpoint), size=SIZE)
    head, gpu_node = {"CPU": 8.0}, {"CPU": 16.0, "GPU": 4.0}

    def plan(spec: EngineSpec, shards: int = 100, nodes: tuple = (head, gpu_node), **kw) -> tuple:
        p = RayRunner(spec, **kw).plan_pool(shards, list(nodes))
        return p.actors, p.cpus_per_actor, p.gpus_per_actor

    assert plan(cpu_spec) == (24, 1.0, 0.0)  # a CPU backend takes no GPU: one single-threaded actor per core
    assert plan(cpu_spec, cpus_per_actor=2) == (12, 2, 0.0)
    assert plan(gpu_spec) == (4, 4.0, 1.0)  # one actor per GPU, the GPU node's CPUs shared among them
    assert plan(gpu_spec, gpus_per_actor=0.5) == (8, 2.0, 0.5)  # two actors share each GPU
    assert plan(gpu_spec, cpus_per_actor=8) == (2, 8, 1.0)  # CPUs of the GPU node run out first
    assert plan(gpu_spec, shards=3) == (3, 4.0, 1.0)  # never more actors than shards
    assert plan(gpu_spec, nodes=(head,)) == (8, 1.0, 0.0)  # no GPU anywhere: CPU actors
    assert plan(gpu_spec, actors=5) == (5, 4.0, 1.0)
    with pytest.raises(JobError, match="no node"):
        plan(gpu_spec, nodes=(head,), gpus_per_actor=1)


def test_worker_with_another_model_is_refused(tmp_path, inputs, tiny_checkpoint) -> None:
    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import save_checkpoint

    torch.manual_seed(1)
    other = save_checkpoint(build_model(get_config("tiny")), tmp_path / "other.pt")
    job = planned_job(inputs, tmp_path / "out", tiny_checkpoint)
    detached = detach_job(job)
    assert detached.engine is None and detached.decoder is None and Path(detached.dst).is_absolute()
    decoder = make_decoder("cpu", 1, job.settings.max_pixels)
    same = attach_job(detached, spec_for(tiny_checkpoint).load(threads=1), decoder, job.config_hash)
    assert same.config_hash == job.config_hash
    with pytest.raises(JobError, match="same checkpoint"):
        attach_job(detached, spec_for(other).load(threads=1), decoder, job.config_hash)
