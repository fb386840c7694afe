"""What embed and extract share: the job configuration fingerprint, shard planning (skip what is done, say why the
rest is redone), turning a shard's members into samples with one result row each, the manifest and the messages.

A job is a ``ShardJob``: it knows its shards, how to turn one shard into a stream of ``Sample``s, and the three
stage callables (decode, infer, encode) that a runner wires together. Runners only orchestrate.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets as pysecrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.versions import library_versions
from pipeline.io.decode import CpuDecoder
from pipeline.io.listing import IMAGE_EXTS, ShardRef, list_shards
from pipeline.io.results import new_row, read_results_state, redo_reason, write_results
from pipeline.io.tar_reader import Member, iter_members
from pipeline.io.tar_writer import write_bytes_atomic
from pipeline.jobs.batch import JobSettings, Sample, encode_sample, probe_samples

if TYPE_CHECKING:
    from pipeline.runtime import Engine

# Exit statuses of the batch commands (also in their --help); 130 = interrupted (Ctrl-C), as shells report SIGINT.
EXIT_OK, EXIT_FAILED, EXIT_SOME_IMAGES_FAILED, EXIT_INTERRUPTED = 0, 1, 3, 130  # 2, a usage error, is click's own
# The job record written at the top of DST by every run (the last run's; the results Parquets hold each shard's own).
MANIFEST_NAME = "manifest.json"


class JobError(RuntimeError):
    """The job cannot run (bad configuration, unreadable input): exit status 1 with this message."""


class JobUsageError(JobError):
    """The job was asked for something its options cannot give (secrets for another model, a missing --shards
    path...): the command line is wrong, exit status 2 with this message."""


# The tEXt keywords of a stego PNG that name the model that made it.
MODEL_NAME_KEY, MODEL_SHA256_KEY = "sris-pipeline model", "sris-pipeline model sha256"


def model_text(info: Any) -> dict[str, str]:
    """The tEXt chunks that name a model (an engine's ``info``) in the PNGs it makes."""
    return {MODEL_NAME_KEY: info.model_name, MODEL_SHA256_KEY: info.model_sha256}


def new_job_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + pysecrets.token_hex(3)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(config: dict[str, Any]) -> str:
    return sha256_hex(json.dumps(config, sort_keys=True).encode())[:20]


@dataclass
class ShardResult:
    """What the writer reports back for one shard."""

    name: str
    rows: int = 0
    ok: int = 0
    error: int = 0
    skipped: int = 0
    failed: str | None = None  # set when the shard could not be completed (it is redone on the next run)


@dataclass
class Totals:
    """Job totals for the summary line and the manifest."""

    shards_total: int = 0
    shards_done: int = 0
    shards_already_done: int = 0
    shards_failed: list[dict[str, str]] = field(default_factory=list)
    shards_completed: list[str] = field(default_factory=list)  # names, in completion order
    images_ok: int = 0
    images_failed: int = 0
    members_skipped: int = 0
    images_marked: int = 0
    images_unmarked: int = 0
    images_unread: int = 0  # digital-layer images that no level reads and no analog path carries: no secret
    seconds: float = 0.0
    psnr_cover: list[float] = field(default_factory=list)
    psnr_secret: list[float] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["status"] == "ok":
                self.images_ok += 1
                if r.get("marked") is not None:
                    self.images_marked += bool(r["marked"])
                    self.images_unmarked += not r["marked"]
                self.images_unread += r.get("key_id") is not None and r.get("layer") is None
                for name in ("psnr_cover", "psnr_secret"):
                    if r[name] is not None and math.isfinite(r[name]):
                        getattr(self, name).append(r[name])
            elif r["status"] == "error":
                self.images_failed += 1
            else:
                self.members_skipped += 1

    def add_stage(self, name: str, seconds: float) -> None:
        self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["psnr_cover"] = _mean(self.psnr_cover)
        d["psnr_secret"] = _mean(self.psnr_secret)
        d["images_per_s"] = (self.images_ok + self.images_failed) / self.seconds if self.seconds else None
        return d

    def exit_code(self) -> int:
        if self.shards_failed:
            return EXIT_FAILED
        return EXIT_SOME_IMAGES_FAILED if self.images_failed else EXIT_OK


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def versions() -> dict[str, str]:
    """The libraries that shape a job's outputs, as installed (the manifest records them)."""
    return library_versions(("sris-pipeline", "torch", "numpy", "pyarrow", "pillow", "simplejpeg", "isal"))


class ShardJob:
    """Base of the embed and extract jobs.

    Subclasses set ``mode`` and implement ``config()``, ``member_samples()``, ``infer()`` and may extend
    ``verify()`` and ``manifest_extra()``. The runner calls ``plan()``, then per shard ``samples()``, ``decode()``,
    ``infer()``, ``verify()``, ``encode()``, ``open_output()``, ``shard_meta()``, and at the end ``finish()``.
    """

    mode = "job"

    def __init__(
        self,
        src: str,
        dst: str,
        engine: Engine,
        settings: JobSettings,
        decoder: CpuDecoder,
        force: bool = False,
        job_id: str | None = None,
    ) -> None:
        self.src, self.dst = src, dst.rstrip("/")
        self.engine, self.settings, self.decoder, self.force = engine, settings, decoder, force
        self.job_id = job_id or new_job_id()
        self.encoder = self.make_encoder()
        self.started = time.time()
        self.totals = Totals()
        self.todo: list[ShardRef] = []
        self.already_done: list[ShardRef] = []
        # Why each shard of ``todo`` that has results in DST is done again ("settings changed: format png -> webp").
        self.redo_reasons: dict[str, str] = {}
        # Shards whose results file is being committed: a Ctrl-C there may land after the commit and before the count.
        self.committing: set[str] = set()
        # Seconds before the first image: loading (and, the first time, building) the engines, planning. Set by
        # the caller (the CLI measures them); the summary keeps them apart from the processing time.
        self.startup_seconds: float | None = None
        self.engine_build_seconds: float = 0.0
        # What actually ran; a distributed runner replaces it (its workers' engines, not the driver's planning one).
        self.runner_info: dict[str, Any] = {"runner": "local"}
        # What the user must know about the outputs (say, the stegos were made by another model): summary + manifest.
        self.warnings: list[str] = []
        if engine.info.channels != 3:
            raise JobError(f"the batch jobs handle RGB models only; this model has {engine.info.channels} channel(s)")

    # -- configuration ------------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What determines the outputs; a completed shard is reused only when this matches. Backend-independent."""
        raise NotImplementedError

    @property
    def config_hash(self) -> str:
        return config_hash(self.config())

    def shard_meta(self, shard: ShardRef) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "mode": self.mode,
            "config": self.config(),
            "config_hash": self.config_hash,
            "source": shard.url,
            "source_fingerprint": shard.fingerprint,
            "backend": self.engine.info.backend,
            "precision": self.engine.info.precision,
        }

    # -- planning -----------------------------------------------------------------------------------------------------
    def plan(self) -> list[ShardRef]:
        """List the source shards and keep those not already completed under this configuration; ``redo_reasons``
        says why each shard that has results in DST is done again."""
        try:
            shards = list_shards(self.src)
        except FileNotFoundError as exc:
            raise JobUsageError(f"--shards {exc}") from exc
        names = [s.name for s in shards]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise JobError(f"shard names collide in {self.src}: {sorted(dup)}")
        config, h = self.config(), self.config_hash
        for shard in shards:
            exists, meta = read_results_state(self.dst, shard.name)
            why = redo_reason(meta, config, h, shard.fingerprint, exists)
            if why is None and not self.force:
                self.already_done.append(shard)
                continue
            self.todo.append(shard)
            if exists:
                self.redo_reasons[shard.name] = "--force" if why is None else why
        self.totals.shards_total = len(shards)
        self.totals.shards_already_done = len(self.already_done)
        return self.todo

    # -- samples ------------------------------------------------------------------------------------------------------
    def base_row(self, m: Member, role: str) -> dict[str, Any]:
        info = self.engine.info
        return new_row(
            job_id=self.job_id,
            shard=m.shard,
            key=m.key,
            member=m.name,
            role=role,
            backend=info.backend,
            precision=info.precision,
            model_sha256=info.model_sha256,
            out_shard=f"{m.shard}.tar",
            key_id=self.key_id,
        )

    @property
    def key_id(self) -> str | None:
        """The id of the digital layer's key (a hash prefix; never the key), None for a model without the layer."""
        return self.engine.key.key_id if self.engine.digital else None

    def digital_config(self) -> dict[str, Any]:
        """What of the digital layer shapes the outputs (its key, which layers run): part of ``config``."""
        if not self.engine.digital:
            return {}
        return {"digital": {"key_id": self.key_id, "layers": self.settings.layers}}

    def error_sample(self, m: Member, role: str, message: str) -> Sample:
        s = Sample(m.key, self.base_row(m, role))
        s.fail(message)
        return s

    def skipped_sample(self, m: Member, role: str, reason: str) -> Sample:
        row = self.base_row(m, role)
        row.update(status="skipped", error=reason, out_shard=None)
        return Sample(m.key, row)

    def compound_exts(self) -> tuple[str, ...]:
        return ()

    def samples(self, shard: ShardRef) -> Iterator[Sample]:
        """Every member of the shard as a Sample, in order: covers to process, the rest as finished rows.

        Members are grouped by key (WebDataset samples are consecutive members with one key); a key that shows up
        again later in the shard is a duplicate and every member of its second group is an error.
        """
        seen: set[str] = set()
        group: list[Member] = []
        for m in iter_members(shard, compound_exts=self.compound_exts()):
            if m.error is not None:
                yield from self._flush(group, seen)
                group = []
                yield self.error_sample(m, "shard" if not m.name else self.role(m.ext), m.error)
                continue
            if group and m.key != group[0].key:
                yield from self._flush(group, seen)
                group = []
            group.append(m)
        yield from self._flush(group, seen)

    def _flush(self, group: list[Member], seen: set[str]) -> Iterator[Sample]:
        if not group:
            return
        key = group[0].key
        if key in seen:
            for m in group:
                yield self.error_sample(
                    m,
                    self.role(m.ext),
                    f"duplicate key {key!r}: an earlier sample of this shard "
                    "already has it (members of a sample must be consecutive)",
                )
            return
        seen.add(key)
        yield from self.member_samples(group)

    def role(self, ext: str) -> str:
        return "cover" if ext in IMAGE_EXTS else "other"

    def member_samples(self, group: list[Member]) -> Iterator[Sample]:
        """Samples for one key's members (all valid, same key), in member order."""
        raise NotImplementedError

    # -- stages -------------------------------------------------------------------------------------------------------
    def probe(self, samples: list[Sample]) -> None:
        probe_samples(samples, self.settings.max_pixels)

    def decode(self, samples: list[Sample]) -> dict[str, float]:
        from pipeline.jobs.batch import decode_samples

        return {"decode": decode_samples(samples, self.decoder, self.settings.size)}

    def infer(self, samples: list[Sample]) -> dict[str, float]:
        raise NotImplementedError

    def verify(self, samples: list[Sample]) -> dict[str, float]:
        """Checks after ``infer``, run as a stage of its own (embed: reveal every stego); none by default."""
        return {}

    def encode(self, sample: Sample) -> None:
        encode_sample(sample, self.encoder, self.settings.ext, self.mode)

    # -- output -------------------------------------------------------------------------------------------------------
    def write_results(self, shard: ShardRef, rows: list[dict[str, Any]]) -> str:
        return write_results(self.dst, shard.name, rows, self.shard_meta(shard), self.job_id)

    def manifest_extra(self) -> dict[str, Any]:
        return {}

    def manifest(self) -> dict[str, Any]:
        info = self.engine.info
        ran = self.runner_info.get("ran")
        engine = {**asdict(info), "engine_sha256": getattr(self.engine, "engine_sha256", None)}
        return {
            "job_id": self.job_id,
            "mode": self.mode,
            "source": self.src,
            "destination": self.dst,
            "model": self.model_record(),
            "config": self.config(),
            "config_hash": self.config_hash,
            "settings": asdict(self.settings),
            "engine": [r["engine"] for r in ran] if ran else engine,
            "decoder": sorted({r["decoder"] for r in ran}) if ran else self.decoder.name,
            "runner": self.runner_info,
            "versions": versions(),
            "started_at": datetime.fromtimestamp(self.started, UTC).isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "shards": {
                "done": list(self.totals.shards_completed),
                "already_done": [s.name for s in self.already_done],
                "failed": self.totals.shards_failed,
                "redone": self.redo_reasons,
            },
            "totals": {
                **self.totals.as_dict(),
                "startup_seconds": self.startup_seconds,
                "engine_build_seconds": self.engine_build_seconds,
            },
            "warnings": self.job_warnings(),
            **self.manifest_extra(),
        }

    def make_encoder(self) -> Any:
        """The encoder of this job's outputs (a PNG carries ``output_text``)."""
        return self.settings.encoder(self.output_text())

    def output_text(self) -> dict[str, str]:
        """Metadata the job's PNG outputs carry (tEXt chunks); none by default."""
        return {}

    def job_warnings(self) -> list[str]:
        """What the user must know about the outputs: the summary and the manifest list them."""
        out = list(self.warnings)
        if self.engine.digital and self.engine.key.public:
            out.append(
                "the digital layer used the public key (no --key-file, no SRIS_KEY): anyone can read the mark and "
                "the secret; `python -m pipeline keygen KEYFILE` makes a key of your own"
            )
        return out

    def model_record(self) -> dict[str, Any]:
        """The model this job ran, as the job record names it: its name (a shipped model's, else the file's stem) and
        the sha256 of its checkpoint."""
        info = self.engine.info
        return {"name": info.model_name, "sha256": info.model_sha256}

    def write_manifest(self) -> str:
        """Write the job record to ``DST/manifest.json`` (atomically, replacing the previous run's); returns its URL."""
        data = json.dumps(self.manifest(), indent=1, default=str).encode()
        return write_bytes_atomic(self.dst, MANIFEST_NAME, data, self.job_id)

    def redo_lines(self, limit: int = 20) -> list[str]:
        """One line per shard that is done again although DST has results for it, with the reason (at most
        ``limit``, then a count)."""
        lines = [f"{name}: redone ({why})" for name, why in self.redo_reasons.items()]
        if len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more shards redone (the manifest lists them all)"]
        return lines

    def committed_uncounted(self) -> list[str]:
        """Shards interrupted while their results were committed whose results did land in DST, complete under this
        configuration (so a rerun skips them, as ``plan`` decides)."""
        counted, config = set(self.totals.shards_completed), self.config()
        out = []
        for shard in self.todo:
            if shard.name in self.committing and shard.name not in counted:
                exists, meta = read_results_state(self.dst, shard.name)
                if exists and redo_reason(meta, config, self.config_hash, shard.fingerprint, exists) is None:
                    out.append(shard.name)
        return out

    def interrupted_message(self) -> str:
        """What a user needs after Ctrl-C: which shards are complete, and that the same command resumes."""
        done_now = list(self.totals.shards_completed) + self.committed_uncounted()
        complete = [s.name for s in self.already_done] + done_now
        total = self.totals.shards_total or len(complete)
        done_set = set(done_now)
        unfinished = [s.name for s in self.todo if s.name not in done_set]
        failed = {f["shard"] for f in self.totals.shards_failed}
        lines = [f"interrupted: {len(complete)} of {total} shards complete in {self.dst}"]
        if done_now:
            lines.append(f"  completed by this run: {_names(done_now)}")
        if self.already_done:
            lines.append(f"  already complete before: {_names([s.name for s in self.already_done])}")
        open_ = [n for n in unfinished if n not in failed]
        if open_:
            lines.append(f"  not completed (partial output discarded): {_names(open_)}")
        if failed:
            lines.append(f"  failed: {_names(sorted(failed))}")
        lines.append("Run the same command again to resume: complete shards are skipped, the others are redone.")
        return "\n".join(lines)

    def summary(self) -> str:
        t = self.totals
        d = t.as_dict()
        rate = f"{d['images_per_s']:.1f} images/s" if d["images_per_s"] else "- images/s"
        timing = f"{t.seconds:.1f} s processing, {rate}"
        if self.startup_seconds is not None:
            build = f", engine build {self.engine_build_seconds:.0f} s of it" if self.engine_build_seconds else ""
            timing += f" (start-up {self.startup_seconds:.1f} s not included{build})"
        parts = [
            f"{self.mode}: {t.images_ok} images ok, {t.images_failed} failed, {t.members_skipped} skipped",
            f"shards {t.shards_done} done, {t.shards_already_done} already done, {len(t.shards_failed)} failed",
            timing,
        ]
        metrics = []
        if d["psnr_cover"] is not None:
            metrics.append(f"mean psnr_cover {d['psnr_cover']:.2f} dB")
        if d["psnr_secret"] is not None:
            metrics.append(f"mean psnr_secret {d['psnr_secret']:.2f} dB")
        if t.images_unread:
            metrics.append(f"{t.images_unread} with no level read (no secret, left out of the mean)")
        if t.images_marked or t.images_unmarked:
            metrics.append(f"{t.images_marked} marked, {t.images_unmarked} unmarked")
        if metrics:
            parts.append(", ".join(metrics))
        warnings = self.job_warnings()
        if warnings:
            parts.append(f"{len(warnings)} warning(s), below")
        return " | ".join(parts) + f" -> {self.dst}" + "".join(f"\nwarning: {w}" for w in warnings)


def _names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
