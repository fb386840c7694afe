"""Runners orchestrate a ``ShardJob``; the work itself is in the job's stage functions (pipeline/jobs/batch.py).

The local runner overlaps the stages in threads connected by small bounded queues, so the slowest stage sets the
pace and memory stays bounded whatever the shard length:

    reader   -> [q] -> decode -> [q] -> infer -> [q] -> verify -> [q] -> encode -> [q] -> writer (calling thread)
    (members,          (thread pool)   (preprocess,     (reveal every   (the check's    (output tar, results
     header probe,                      embed,           stego, PSNR/    end, then the   Parquet, commit per shard)
     batching)                          compose)         SSIM)           thread pool)

Decoding and encoding share one pool of ``workers`` threads (simplejpeg, Pillow, ISA-L and numpy release the GIL);
embed and verify run in threads of their own, each calling its engine graph with the library's own threads, so that
verify of batch i (reveal, then the metrics in torch) overlaps embed of batch i + 1 (extract has no verify: that
stage passes its batches on). A batch holds at most ``batch_size`` images and at most ``pixel_budget`` pixels, so a
shard of 50 MP photos moves one or two photos per batch.

Shard outcome: all members streamed and written -> output tar committed, then results Parquet committed (the
shard is done). The source failing mid-shard (after retries) or the writer failing -> the shard's partial output
is discarded, it is reported as failed and redone by the next run; the job goes on with the other shards.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from pipeline.io.listing import ShardRef
from pipeline.io.tar_writer import TarShardWriter, remove_stale_partials
from pipeline.jobs.batch import Sample, finish_pending
from pipeline.jobs.common import ShardJob, ShardResult

DEFAULT_PIXEL_BUDGET = 32_000_000
QUEUE_DEPTH = 2
# Written batches whose digital check may still be running (``verify_batch``: a smooth cover's LDPC decode takes
# 30-200 ms) before the writer waits for the oldest: enough to ride out a run of decodes, and a bound on what they
# hold (each batch its 8-bit stegos on the grid, 1.5 MB at 256 px, and until its check runs their float copies).
MAX_UNFINISHED = 8


@dataclass
class _Start:
    shard: ShardRef


@dataclass
class _End:
    shard: ShardRef


@dataclass
class _Failed:
    shard: ShardRef
    error: BaseException


@dataclass
class _Batch:
    shard: ShardRef
    samples: list[Sample]
    futures: list[Future] = field(default_factory=list)
    share: float = 0.0  # the part of its shard this batch read (progress: a shard is 1)


@dataclass
class _Abort:
    error: BaseException


_DONE = object()


class _Pipeline:
    """Thread plumbing: bounded queues whose put/get give up when the job is stopping."""

    def __init__(self, depth: int) -> None:
        self.stop = threading.Event()
        self.queues = [queue.Queue(maxsize=depth) for _ in range(5)]

    def put(self, q: queue.Queue, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _DONE


class LocalRunner:
    """Runs a job on this machine with overlapping stages (see the module docstring)."""

    def __init__(
        self,
        workers: int | None = None,
        batch_size: int = 8,
        pixel_budget: int = DEFAULT_PIXEL_BUDGET,
        progress: bool | None = None,
        queue_depth: int = QUEUE_DEPTH,
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.batch_size = max(1, batch_size)
        self.pixel_budget = pixel_budget
        self.progress = progress
        self.queue_depth = queue_depth

    # -- reader -------------------------------------------------------------------------------------------------------
    def batches(self, job: ShardJob, shard: ShardRef) -> Iterator[list[Sample]]:
        """Group a shard's samples into batches by image count and pixel budget (inactive samples ride along)."""
        batch: list[Sample] = []
        images = pixels = 0
        for s in job.samples(shard):
            job.probe([s])
            batch.append(s)
            if s.active:
                images += 1
                pixels += s.pixels
            if images >= self.batch_size or pixels >= self.pixel_budget or len(batch) >= 4 * self.batch_size:
                yield batch
                batch, images, pixels = [], 0, 0
        if batch:
            yield batch

    def _reader(self, p: _Pipeline, job: ShardJob, out: queue.Queue) -> None:
        try:
            for shard in job.todo:
                if not p.put(out, _Start(shard)):
                    return
                try:
                    for samples in self.batches(job, shard):
                        if not p.put(out, _Batch(shard, samples, share=shard_share(shard, samples))):
                            return
                except Exception as exc:  # the source failed for good (after retries): this shard only
                    p.put(out, _Failed(shard, exc))
                    continue
                p.put(out, _End(shard))
            p.put(out, _DONE)
        except BaseException as exc:
            p.put(out, _Abort(exc))

    # -- middle stages ------------------------------------------------------------------------------------------------
    def _stage(self, p: _Pipeline, inq: queue.Queue, outq: queue.Queue, fn: Callable[[_Batch], None]) -> None:
        try:
            while True:
                item = p.get(inq)
                if item is _DONE and p.stop.is_set():
                    return
                if isinstance(item, _Batch):
                    fn(item)
                if not p.put(outq, item) or item is _DONE or isinstance(item, _Abort):
                    return
        except BaseException as exc:
            p.put(outq, _Abort(exc))

    # -- run ----------------------------------------------------------------------------------------------------------
    def run(self, job: ShardJob) -> list[ShardResult]:
        """Process ``job.todo`` (call ``job.plan()`` first). Returns one ShardResult per shard; totals go to
        ``job.totals``. Raises when the job itself fails (engine error, bug); shard failures are only reported."""
        t0 = time.perf_counter()
        p = _Pipeline(self.queue_depth)
        q_read, q_dec, q_inf, q_ver, q_enc = p.queues
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="codec")
        job.decoder.attach_pool(pool)  # one pool for decoding and encoding: two would oversubscribe the cores
        totals = job.totals

        def timed(stage: Callable[[list[Sample]], dict[str, float]]) -> Callable[[_Batch], None]:
            def run(b: _Batch) -> None:
                for name, sec in stage(b.samples).items():
                    totals.add_stage(name, sec)

            return run

        def encode(b: _Batch) -> None:
            # A batch's verification may still wait on its digital check (``verify_batch``): the writer finishes it
            # before the shard's rows are written (``_write``), and meanwhile the stegos are encoded and written.
            b.futures = [pool.submit(self._timed_encode, job, s) for s in b.samples]

        stages = [
            ("decode", q_read, q_dec, timed(job.decode)),
            ("infer", q_dec, q_inf, timed(job.infer)),
            ("verify", q_inf, q_ver, timed(job.verify)),
            ("encode", q_ver, q_enc, encode),
        ]
        threads = [threading.Thread(target=self._reader, args=(p, job, q_read), name="reader", daemon=True)]
        threads += [
            threading.Thread(target=self._stage, args=(p, inq, outq, fn), name=name, daemon=True)
            for name, inq, outq, fn in stages
        ]
        for t in threads:
            t.start()
        bar = progress_bar(job, self.progress)
        results: list[ShardResult] = []
        try:
            self._write(p, job, q_enc, bar, results)
        finally:
            p.stop.set()
            for t in threads:
                t.join(timeout=30)
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            totals.seconds += time.perf_counter() - t0
        return results

    @staticmethod
    def _timed_encode(job: ShardJob, s: Sample) -> float:
        t = time.perf_counter()
        job.encode(s)
        return time.perf_counter() - t

    def _write(
        self, p: _Pipeline, job: ShardJob, inq: queue.Queue, bar: JobProgress, results: list[ShardResult]
    ) -> None:
        writer: TarShardWriter | None = None
        shard: str | None = None  # the shard being written
        rows: list[dict[str, Any]] = []
        failed = False  # the current shard already failed: drain its remaining items
        unfinished: deque[list[Sample]] = deque()  # written batches whose verification may still run (oldest first)
        totals = job.totals
        try:
            while True:
                item = p.get(inq)
                if item is _DONE:
                    return
                if isinstance(item, _Abort):
                    raise item.error
                if failed and not isinstance(item, _Start):
                    continue
                try:
                    if isinstance(item, _Start):
                        writer, rows, failed, shard = None, [], False, item.shard.name
                        unfinished.clear()
                        bar.start_shard()
                        writer = TarShardWriter(job.dst, item.shard.name, job.job_id)
                    elif isinstance(item, _Batch):
                        self._write_batch(job, writer, item, rows)
                        unfinished.append(item.samples)
                        while len(unfinished) > MAX_UNFINISHED:  # bounded: each holds its check's arrays
                            self._finish(job, unfinished.popleft())
                        bar.add(item.share, sum(1 for s in item.samples if s.row["role"] in ("cover", "stego")))
                    elif isinstance(item, _End):
                        while unfinished:  # every row complete before the shard's results are written
                            self._finish(job, unfinished.popleft())
                        t = time.perf_counter()
                        writer.commit()  # the output shard first: the results file is what marks the shard done
                        writer = None
                        job.committing.add(item.shard.name)
                        job.write_results(item.shard, rows)
                        totals.add_stage("write", time.perf_counter() - t)
                        results.append(self._finish_shard(job, item.shard, rows))
                        job.committing.discard(item.shard.name)
                        bar.end_shard()
                    elif isinstance(item, _Failed):
                        raise item.error
                except Exception as exc:  # the source or the destination failed for this shard (after retries)
                    if writer is not None:
                        writer.abort()
                        writer = None
                    failed = not isinstance(item, _End | _Failed)  # drain until the next shard starts
                    results.append(self._fail_shard(job, item.shard, exc))
                    bar.end_shard()
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or the job failing: the open shard is never committed
            if writer is not None:
                writer.abort()
            elif shard is not None:  # interrupted inside the writer's constructor: its temporary file is ours
                remove_stale_partials(job.dst, f"{shard}.tar")
            raise

    @staticmethod
    def _write_batch(job: ShardJob, writer: TarShardWriter, item: _Batch, rows: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        for s, fut in zip(item.samples, item.futures, strict=True):
            job.totals.add_stage("encode", fut.result())
            for name, data in s.outputs:
                writer.add(name, data)
            s.outputs = []
            rows.append(s.row)
        job.totals.add_stage("write", time.perf_counter() - t)

    @staticmethod
    def _finish(job: ShardJob, samples: list[Sample]) -> None:
        """Finish a written batch's verification (``finish_pending``): its rows' figures, its time the verify
        stage's."""
        spent = finish_pending(samples)
        if spent:
            job.totals.add_stage("verify", spent)

    @staticmethod
    def _finish_shard(job: ShardJob, shard: ShardRef, rows: list[dict[str, Any]]) -> ShardResult:
        res = ShardResult(shard.name, rows=len(rows))
        for r in rows:
            if r["status"] == "ok":
                res.ok += 1
            elif r["status"] == "error":
                res.error += 1
            else:
                res.skipped += 1
        job.totals.add_rows(rows)
        job.totals.shards_done += 1
        job.totals.shards_completed.append(shard.name)
        return res

    @staticmethod
    def _fail_shard(job: ShardJob, shard: ShardRef, error: BaseException) -> ShardResult:
        message = f"{type(error).__name__}: {error}"
        if not any(f["shard"] == shard.name for f in job.totals.shards_failed):
            job.totals.shards_failed.append({"shard": shard.name, "error": message})
        return ShardResult(shard.name, failed=message)


def shard_share(shard: ShardRef, samples: list[Sample]) -> float:
    """The part of ``shard`` these samples were read from, for the progress bar: their bytes over the tar's size, or
    their files over the folder's; 0 when the shard's size is unknown (the bar then moves when the shard ends)."""
    if shard.kind == "folder" and shard.files:
        return sum(1 + len(s.secret_data or ()) for s in samples) / len(shard.files)
    if shard.size:
        return sum(len(s.data or b"") + sum(map(len, s.secret_data or ())) for s in samples) / shard.size
    return 0.0


class JobProgress:
    """The job's progress bar, counted in shards (the job knows how many it has to do) and moved within a shard as
    its members are written, so it shows a total and an ETA; the images and images/s so far ride along."""

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} shards [{elapsed}<{remaining}{postfix}]"

    def __init__(self, desc: str, shards: int, enabled: bool | None) -> None:
        # ``enabled`` None: tqdm's own choice, on when stderr is a terminal. Off: no bar at all (a disabled tqdm still
        # sets up its multiprocessing lock, 35 ms of a job's start).
        disable = None if enabled is None else not enabled
        self.bar = (
            None
            if enabled is False
            else tqdm(desc=desc, total=shards, unit="shard", bar_format=self.BAR_FORMAT, disable=disable)
        )
        self.images = 0
        self.in_shard = 0.0
        self.t0 = time.perf_counter()

    def start_shard(self) -> None:
        self.in_shard = 0.0

    def add(self, share: float, images: int) -> None:
        step = max(0.0, min(share, 0.999 - self.in_shard))  # the last bit comes with the commit
        self.in_shard += step
        self.images += images
        if self.bar is None:
            return
        rate = self.images / max(1e-9, time.perf_counter() - self.t0)
        self.bar.set_postfix_str(f"{self.images} img, {rate:.1f} img/s", refresh=False)
        self.bar.update(step)

    def end_shard(self) -> None:
        if self.bar is not None:
            self.bar.update(1.0 - self.in_shard)
        self.in_shard = 0.0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(job: ShardJob, enabled: bool | None) -> JobProgress:
    return JobProgress(job.mode, len(job.todo), enabled)
