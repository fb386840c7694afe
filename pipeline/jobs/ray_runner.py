"""The Ray runner: the same job, the same per-shard outputs, spread over a Ray cluster with Ray Data.

One input shard stays the unit of work (docs/scale-out.md). The driver plans the job exactly as the local runner's
caller does (``job.plan()`` skips completed shards), then Ray Data maps the shards still to do over a pool of actors:

    driver:  job.plan() -> shards to do -> ray.data.from_items(one row per shard, one block per shard)
    actors:  map_batches(ShardWorker, batch_size=1, compute=ActorPoolStrategy(size=A), num_cpus=C, num_gpus=G)
             ShardWorker.__init__  loads the engine and the decoder once per actor
             ShardWorker.__call__  runs one shard through ``process_shard``: read -> decode -> embed/reveal -> encode
                                   -> output tar + results Parquet, committed under the local runner's conventions
    driver:  one small report per shard (counts, metrics, stage seconds) -> job totals, progress bar, manifest

``process_shard`` runs the local runner (pipeline/jobs/runners.py) on that one shard, inside the actor: the stages,
the per-batch functions of pipeline/jobs/batch.py, the writer and its commit order (output tar, then results Parquet
under temporary names) are the very same code, so a shard written by an actor is byte for byte what the local
runner writes, and resuming works the same way. Keeping a shard in one actor from its first byte to its commit is
deliberate: its output tar must hold the members in shard order and appear atomically, which a per-image shuffle
across actors could only give by funnelling every output through the driver or a groupby holding all of them.
Parallelism comes from the many shards in flight (one per actor) and, inside each actor, from the local runner's
overlapping stages (decoding and encoding threads while the engine runs).

Failure and resume: a shard that fails (source unreadable after retries, destination error) is reported failed and
redone by the next run, as locally. An actor that dies (node lost, out of memory) is restarted by Ray Data and its
shard is retried from the start; the dead attempt's temporary files are never committed (local: the hidden
``.partial`` is removed by the next writer of that shard; S3: the multipart upload never completes). An exception in
the job itself (engine error, bug) fails the Ray job; completed shards stay completed. Killing the driver kills its
actors: rerun the same command and only the shards without a complete, matching results Parquet are redone.

Every node must see the same checkpoint (the shipped default, or ``--checkpoint`` on a shared path) and be able to
reach SRC and DST (``s3://``, or a file system mounted at the same path on every node): each actor checks that its
model hash is the one the job was planned with and refuses to run otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.io.decode import make_decoder
from pipeline.io.shards import ShardRef
from pipeline.jobs.common import JobError, ShardJob, ShardResult, Totals
from pipeline.jobs.runners import DEFAULT_PIXEL_BUDGET, JobProgress, LocalRunner
from pipeline.runtime import Engine, load_engine

log = logging.getLogger(__name__)

# Totals fields that belong to the driver (planning, wall time), not to the per-shard reports of the actors.
_DRIVER_TOTALS = frozenset({"shards_total", "shards_already_done", "seconds"})


# ---------------------------------------------------------------------------------------------------------------------
# What each worker loads


@dataclass(frozen=True)
class EngineSpec:
    """How a worker loads its engine: the arguments of ``pipeline.runtime.load_engine`` (engines are process-bound
    and cannot travel, so each actor loads its own from this recipe).

    ``device=None`` lets each worker choose: an actor given a GPU runs ``auto`` (TensorRT first), ``tensorrt`` and
    ``torch`` on it; an actor without one runs the best CPU backend.
    """

    backend: str = "auto"
    checkpoint: str | None = None
    size: int = 256
    device: str | None = None
    precision: str | None = None
    engines_dir: str | None = "engines"
    key_file: str | None = None  # the digital layer's key file, read by each worker (or SRIS_KEY there)

    def resolved(self) -> EngineSpec:
        """Local paths made absolute: Ray workers do not share the driver's working directory on other nodes."""
        return dataclasses.replace(
            self,
            checkpoint=_absolute(self.checkpoint),
            engines_dir=_absolute(self.engines_dir),
            key_file=_absolute(self.key_file),
        )

    def wants_gpu(self) -> bool:
        """Whether this engine can use a GPU when the cluster has one (``num_gpus`` is then given to each actor)."""
        if self.device is not None:
            return self.device.startswith("cuda")
        return self.backend in ("auto", "tensorrt", "torch")

    def load(self, threads: int | None = None, gpu: bool = False) -> Engine:
        """Load the engine in this process; ``gpu`` says whether Ray gave this process a GPU."""
        device = self.device
        if device is None and gpu and self.backend in ("auto", "torch"):
            # Ray reserved a GPU for this process: make `auto` choose among the backends that run on it (TensorRT
            # first) and keep `torch` off the CPU, where it stays unless asked.
            device = "cuda"
        return load_engine(
            self.backend,
            self.checkpoint,
            self.size,
            device,
            self.precision,
            engines_dir=self.engines_dir,
            threads=threads,
            key=self.key_file,
        )

    def planning_engine(self, model: Any = None) -> Engine:
        """The engine the driver needs to plan: the torch reference on the CPU, which any head node can load, of
        ``model`` when the driver has loaded it already (else of ``checkpoint``).

        Planning only reads the model's hash and shape (the configuration fingerprint is backend-independent);
        the images go through the engines the actors load.
        """
        return load_engine("torch", self.checkpoint if model is None else model, self.size, "cpu", key=self.key_file)


def _absolute(path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return os.path.abspath(path)


# ---------------------------------------------------------------------------------------------------------------------
# The per-shard function (Ray actors call it; a Spark executor can call it the same way, see docs/scale-out.md)


def detach_job(job: ShardJob) -> ShardJob:
    """A copy of a planned job without what is bound to this process (engine, decoder and its thread pool, encoder),
    ready to be pickled to workers. A local destination is made absolute (workers do not share the driver's cwd)."""
    clone = copy.copy(job)
    clone.engine = clone.decoder = clone.encoder = None
    clone.todo, clone.already_done, clone.totals = [], [], Totals()
    if "://" not in clone.dst:
        clone.dst = os.path.abspath(clone.dst)
    return clone


def attach_job(detached: ShardJob, engine: Engine, decoder: Any, expected_config_hash: str) -> ShardJob:
    """Give a detached job this worker's engine and decoder; refuse a worker whose model is not the planned one."""
    job = copy.copy(detached)
    job.engine, job.decoder = engine, decoder
    job.encoder = job.make_encoder()  # after the engine: the outputs' metadata names its model
    if job.config_hash != expected_config_hash:
        raise JobError(
            f"worker {socket.gethostname()} loaded model {engine.info.model_sha256[:12]} (configuration "
            f"{job.config_hash}), but the job was planned with configuration {expected_config_hash}: every node "
            "must see the same checkpoint file"
        )
    return job


def process_shard(job: ShardJob, shard: ShardRef, runner: LocalRunner) -> dict[str, Any]:
    """Run one shard through the local runner in this process and return its report (JSON-able).

    The report holds the shard's ``ShardResult``, the totals of this shard alone (to be merged on the driver with
    ``merge_report``), and what ran it (engine, decoder, host). Raises when the job itself fails (engine error).
    """
    job.todo, job.totals = [shard], Totals()
    results = runner.run(job)
    result = results[0] if results else ShardResult(shard.name, failed="the runner returned no result")
    engine = job.engine
    return {
        "result": asdict(result),
        "totals": asdict(job.totals),
        "engine": {**asdict(engine.info), "engine_sha256": getattr(engine, "engine_sha256", None)},
        "decoder": job.decoder.name,
        "host": socket.gethostname(),
    }


def merge_report(job: ShardJob, report: dict[str, Any]) -> ShardResult:
    """Add one shard's report (from ``process_shard``, on any worker) to the driver's ``job.totals``."""
    totals = job.totals
    for f in dataclasses.fields(Totals):
        if f.name in _DRIVER_TOTALS or f.name not in report["totals"]:
            continue
        mine, theirs = getattr(totals, f.name), report["totals"][f.name]
        if isinstance(mine, list):
            mine.extend(theirs)
        elif isinstance(mine, dict):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        else:
            setattr(totals, f.name, mine + theirs)
    return ShardResult(**report["result"])


def shard_to_json(shard: ShardRef) -> str:
    return json.dumps(asdict(shard))


def shard_from_json(text: str) -> ShardRef:
    d = json.loads(text)
    d["files"] = tuple(d.get("files") or ())
    return ShardRef(**d)


class ShardWorker:
    """The callable class Ray Data runs in each actor: one engine and one decoder per actor, one shard per call.

    Args (``fn_constructor_kwargs``):
        job: the planned job from ``detach_job``. spec: the engine recipe. decoder: auto, cpu or dali.
        workers: decode/encode threads (the actor's CPUs). batch_size, pixel_budget: as the local runner's.
        config_hash: the driver's configuration fingerprint, checked against this worker's model.
        gpu: whether Ray gives this actor a GPU.
    """

    def __init__(
        self,
        job: ShardJob,
        spec: EngineSpec,
        decoder: str,
        workers: int,
        batch_size: int,
        pixel_budget: int,
        config_hash: str,
        gpu: bool,
    ) -> None:
        import torch

        # Ray pins OMP_NUM_THREADS to the actor's CPUs; torch, ONNX Runtime and OpenVINO are told the same number.
        torch.set_num_threads(workers)
        engine = spec.load(threads=workers, gpu=gpu)
        dec = make_decoder(decoder, workers, job.settings.max_pixels, batch_size=batch_size)
        self.job = attach_job(job, engine, dec, config_hash)
        self.runner = LocalRunner(workers=workers, batch_size=batch_size, pixel_budget=pixel_budget, progress=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        reports = [self.run(str(s)) for s in batch["shard"]]
        return {"report": np.array(reports, dtype=object)}

    def run(self, shard_json: str) -> str:
        """One shard (``shard_to_json``) in, its report (JSON, for ``merge_report``) out."""
        return json.dumps(process_shard(self.job, shard_from_json(shard_json), self.runner), default=str)


# ---------------------------------------------------------------------------------------------------------------------
# The runner


@dataclass(frozen=True)
class RayPlan:
    """The actor pool one run uses (logged, and recorded in ``job.runner_info``)."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    cluster: dict[str, float]  # alive nodes and their CPUs and GPUs in all


class RayRunner:
    """Runs a planned ``ShardJob`` on a Ray cluster, with the same outputs as ``LocalRunner``.

    Args:
        spec: how each actor loads its engine (the CLI's --backend, --checkpoint, --size, --device, --precision,
            --engines-dir).
        address: Ray's own ``address``: None starts a local cluster (or joins the one ``RAY_ADDRESS`` names),
            ``"auto"`` joins the cluster this node belongs to, ``"ray://host:10001"`` goes through Ray Client.
            Ignored when Ray is already initialised in this process.
        actors: size of the actor pool [default: as many as the nodes hold (see ``plan_pool``); at most one per
            shard to do].
        cpus_per_actor: CPUs reserved per actor, also its decode/encode threads and engine threads [default: 1 for
            CPU actors; a GPU node's CPUs shared among its GPU actors].
        gpus_per_actor: GPUs per actor (0.5 = two actors share a GPU) [default: 1 when the cluster has GPUs and the
            engine can use one, else 0].
        decoder: auto, cpu or dali, resolved in each actor (auto takes DALI on a GPU when installed).
        batch_size, pixel_budget: per batch inside an actor, as the local runner's.
        progress: a bar on the driver (shards done of all, ETA, images/s) [default: when on a terminal].
        runtime_env: passed to ``ray.init`` when this runner starts or joins the cluster (e.g. ``{"pip": [...]}``).
    """

    def __init__(
        self,
        spec: EngineSpec,
        address: str | None = None,
        actors: int | None = None,
        cpus_per_actor: float | None = None,
        gpus_per_actor: float | None = None,
        decoder: str = "auto",
        batch_size: int = 8,
        pixel_budget: int = DEFAULT_PIXEL_BUDGET,
        progress: bool | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        if actors is not None and actors < 1:
            raise ValueError(f"actors must be at least 1, got {actors}")
        if (cpus_per_actor is not None and cpus_per_actor <= 0) or (gpus_per_actor is not None and gpus_per_actor < 0):
            raise ValueError("cpus_per_actor must be > 0 and gpus_per_actor >= 0")
        self.spec = spec.resolved()
        self.address = address
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.gpus_per_actor = gpus_per_actor
        self.decoder = decoder
        self.batch_size = max(1, batch_size)
        self.pixel_budget = pixel_budget
        self.progress = progress
        self.runtime_env = runtime_env
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
            raise JobError("the Ray runner needs Ray Data: pip install 'sris-pipeline[ray]'")

    def plan_pool(self, shards: int, nodes: list[dict[str, float]]) -> RayPlan:
        """Actor count and resources for ``shards`` shards on a cluster whose alive nodes have these resources.

        GPU actors: ``gpus_per_actor`` each (default 1 when some node has a GPU and the engine can use one), and by
        default the CPUs of a GPU node shared out among its GPU actors (they decode and encode). CPU actors:
        ``cpus_per_actor`` each (default 1: one single-threaded actor per core scales best on CPUs). The pool is as
        large as the nodes hold, and never larger than the number of shards.
        """
        gpu_nodes = [n for n in nodes if n.get("GPU", 0) > 0]
        per_gpu = self.gpus_per_actor
        if per_gpu is None:
            per_gpu = 1.0 if gpu_nodes and self.spec.wants_gpu() else 0.0
        if per_gpu > 0 and not gpu_nodes:
            raise JobError(f"{per_gpu:g} GPU(s) per actor asked, but no node of the Ray cluster has a GPU")
        if per_gpu > 0:
            cpus = self.cpus_per_actor or max(
                1.0, min(math.floor(n.get("CPU", 1) / n["GPU"] * per_gpu) for n in gpu_nodes)
            )
            fits = [min(n["GPU"] / per_gpu, n.get("CPU", 0) / cpus) for n in gpu_nodes]
        else:
            cpus = self.cpus_per_actor or 1.0
            fits = [n.get("CPU", 0) / cpus for n in nodes]
        actors = self.actors or max(1, sum(math.floor(f + 1e-9) for f in fits))
        totals = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
        return RayPlan(max(1, min(actors, shards)), cpus, per_gpu, {"nodes": len(nodes), **totals})

    def run(self, job: ShardJob) -> list[ShardResult]:
        """Process ``job.todo`` on the cluster (call ``job.plan()`` first). Returns one ShardResult per shard (in
        completion order); totals go to ``job.totals`` and what ran to ``job.runner_info``. Raises ``JobError``
        when the Ray job itself fails (shard failures are only reported, as with the local runner)."""
        import ray

        t0 = time.perf_counter()
        started_here = self._connect(ray)
        try:
            return self._run(ray, job) if job.todo else []
        finally:
            job.totals.seconds += time.perf_counter() - t0
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Join or start the cluster unless this process is already connected; True when this call connected."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"address": self.address, "log_to_driver": True}
        if self.runtime_env:
            kwargs["runtime_env"] = self.runtime_env
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            kwargs["include_dashboard"] = False  # a throwaway local cluster: spare its memory and startup time
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises bare Exceptions (node startup timeout) as well as ConnectionErrors
            where = self.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
            raise JobError(f"cannot start or join the Ray cluster ({where}): {_cause(exc)}") from exc
        return True

    def _run(self, ray: Any, job: ShardJob) -> list[ShardResult]:
        from ray.data import ActorPoolStrategy, DataContext

        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        plan = self.plan_pool(len(job.todo), nodes)
        log.info(
            "ray: %d actor(s), %g CPU and %g GPU each, %d shard(s) to do",
            plan.actors,
            plan.cpus_per_actor,
            plan.gpus_per_actor,
            len(job.todo),
        )
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver shows one bar in images, like the local runner
        ctx.print_on_execution_start = False
        workers = max(1, math.floor(plan.cpus_per_actor))
        items = [{"shard": shard_to_json(s)} for s in job.todo]
        # One block per shard, one shard per call, one call in flight per actor: shards are handed out as actors
        # free up, so a slow shard never holds others queued behind it.
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardWorker,
            batch_size=1,
            compute=ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=1),
            num_cpus=plan.cpus_per_actor,
            num_gpus=plan.gpus_per_actor or None,
            fn_constructor_kwargs={
                "job": detach_job(job),
                "spec": self.spec,
                "decoder": self.decoder,
                "workers": workers,
                "batch_size": self.batch_size,
                "pixel_budget": self.pixel_budget,
                "config_hash": job.config_hash,
                "gpu": plan.gpus_per_actor > 0,
            },
        )
        return self._collect(ray, job, ds.iter_rows(), plan)

    def _collect(self, ray: Any, job: ShardJob, rows: Iterable[dict[str, Any]], plan: RayPlan) -> list[ShardResult]:
        results: list[ShardResult] = []
        ran: dict[str, dict[str, Any]] = {}
        bar = JobProgress(f"{job.mode} (ray)", len(job.todo), self.progress)
        try:
            for row in rows:
                report = json.loads(row["report"])
                res = merge_report(job, report)
                results.append(res)
                who = json.dumps({"engine": report["engine"], "decoder": report["decoder"]}, sort_keys=True)
                entry = ran.setdefault(
                    who, {"engine": report["engine"], "decoder": report["decoder"], "shards": 0, "hosts": []}
                )
                entry["shards"] += 1
                if report["host"] not in entry["hosts"]:
                    entry["hosts"].append(report["host"])
                bar.add(0.0, res.ok + res.error)  # a worker reports a shard once it is done
                bar.end_shard()
        except (ray.exceptions.RayError, ray.exceptions.UserCodeException) as exc:
            raise JobError(f"the Ray job failed (completed shards are kept; rerun to finish): {_cause(exc)}") from exc
        finally:
            bar.close()
            job.runner_info = {
                "runner": "ray",
                "address": self.address,
                "actors": plan.actors,
                "cpus_per_actor": plan.cpus_per_actor,
                "gpus_per_actor": plan.gpus_per_actor,
                "cluster": plan.cluster,
                "ran": list(ran.values()),
            }
        return results


def _cause(exc: BaseException) -> str:
    """The innermost error of a Ray exception chain, as one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
