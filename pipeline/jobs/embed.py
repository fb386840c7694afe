"""The embed job: hide the secret image(s) in every cover of every shard; one output shard + one results Parquet
per input shard.

Secrets come either from files shared by every cover (``--secret IMG``, K times) or from each sample's own members
(``--secret-ext EXT``, K times: ``KEY.EXT``). Per sample, the cover is its first member with an image extension
(jpg, png, webp...); secret members are recorded as ``skipped`` rows ("secret of KEY"), other members (json, txt)
as ``skipped`` rows too, so the Parquet has one row per input member.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.io.decode import CpuDecoder, ImageDecodeError
from pipeline.io.listing import IMAGE_EXTS
from pipeline.io.tar_reader import Member
from pipeline.jobs.batch import JobSettings, Sample, embed_batch, prepare_secrets, secret_id, verify_batch
from pipeline.jobs.common import JobError, JobUsageError, ShardJob, model_text, sha256_hex
from pipeline.jobs.messages import MessageError, MessageSource

if TYPE_CHECKING:
    from pipeline.runtime import Engine


def check_secret_options(secrets: int, secret_exts: list[str], k: int | None = None) -> None:
    """Refuse (``JobUsageError``) secrets given both ways or not at all, a --secret-ext that names the covers, and
    (when the model's K is known) another count than K."""
    if secrets and secret_exts:
        raise JobUsageError(
            "--secret and --secret-ext exclude each other: give the secret images either as files shared by every "
            "cover (--secret IMG) or as each sample's own KEY.EXT member (--secret-ext EXT)"
        )
    if not secrets and not secret_exts:
        raise JobUsageError(
            "no secret image given: give --secret IMG (shared by every cover) or --secret-ext EXT (each sample's "
            "own KEY.EXT member), once per secret the model hides"
        )
    bad = [e for e in secret_exts if e.lower().lstrip(".") in IMAGE_EXTS]
    if bad:
        raise JobUsageError(
            f"--secret-ext {bad[0]} would take the covers themselves; use a compound extension such as secret.png"
        )
    given = secrets or len(secret_exts)
    if k is not None and given != k:
        what = "--secret" if secrets else "--secret-ext"
        raise JobUsageError(f"this model hides K={k} secret image(s) per cover, but {given} {what} were given")


class EmbedJob(ShardJob):
    mode = "embed"

    def __init__(
        self,
        src: str,
        dst: str,
        engine: Engine,
        settings: JobSettings,
        decoder: CpuDecoder,
        secrets: list[bytes] | None = None,
        secret_exts: list[str] | None = None,
        force: bool = False,
        job_id: str | None = None,
        messages: MessageSource | None = None,
    ) -> None:
        super().__init__(src, dst, engine, settings, decoder, force, job_id)
        if messages is not None and not engine.digital:
            raise JobUsageError("--message needs a model with the digital layer (it rides in the layer's base level)")
        if settings.layers == "digital" and not engine.digital:
            raise JobUsageError(
                "--layers digital needs a model with the digital layer (`python -m pipeline model-info`)"
            )
        self.messages = messages
        self.message_room = messages.max_bytes if messages is not None else None
        k = engine.info.num_secrets
        secrets, secret_exts = list(secrets or []), [e.lower().lstrip(".") for e in secret_exts or []]
        check_secret_options(len(secrets), secret_exts, k)
        self.secret_exts = secret_exts
        self.secret_hashes = [sha256_hex(b) for b in secrets]
        self.shared_id = secret_id(secrets) if secrets else None
        self.shared: np.ndarray | None = None
        if secrets:
            try:
                self.shared = prepare_secrets(secrets, settings.size, settings.max_pixels)  # (K, N, N, 3) uint8
            except ImageDecodeError as exc:
                raise JobError(f"cannot use the --secret image: {exc}") from exc

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "mode": "embed",
            "model_sha256": self.engine.info.model_sha256,
            "size": self.settings.size,
            "format": self.settings.fmt,
            # How the residual reaches full size (and the area average that brings a stego back): outputs differ.
            "upsample": self.settings.upsample,
        }
        if self.settings.fmt == "jpeg":
            cfg["jpeg_quality"] = self.settings.jpeg_quality
        if self.secret_exts:
            cfg["secret_ext"] = self.secret_exts
        else:
            cfg["secrets_sha256"] = self.secret_hashes
        cfg.update(self.digital_config())
        if self.messages is not None:
            cfg["digital"]["message"] = self.messages.describe
        return cfg

    def output_text(self) -> dict[str, str]:
        """Each stego PNG names the model that made it (``extract`` warns when another one reads it)."""
        return model_text(self.engine.info)

    def compound_exts(self) -> tuple[str, ...]:
        return tuple(self.secret_exts)

    def role(self, ext: str) -> str:
        if ext in self.secret_exts:
            return "secret"
        return "cover" if ext in IMAGE_EXTS else "other"

    def member_samples(self, group: list[Member]) -> Iterator[Sample]:
        key = group[0].key
        covers = [m for m in group if self.role(m.ext) == "cover"]
        secrets = {m.ext: m for m in group if self.role(m.ext) == "secret"}
        cover = covers[0] if covers else None
        for m in group:
            role = self.role(m.ext)
            if m is cover:
                yield self._cover_sample(m, secrets)
            elif role == "cover":
                yield self.error_sample(
                    m,
                    role,
                    f"duplicate key {key!r}: the sample already has a cover image "
                    f"({cover.name}); its output {key}.{self.settings.ext} can hold only one",
                )
            elif role == "secret":
                why = f"secret of {key}" if cover else f"secret of {key}, which has no cover image"
                yield self.skipped_sample(m, role, why)
            else:
                yield self.skipped_sample(m, role, f"not a cover image ({m.ext or 'no extension'}): not processed")

    def _cover_sample(self, m: Member, secrets: dict[str, Member]) -> Sample:
        row = self.base_row(m, "cover")
        message = None
        if self.messages is not None:
            try:
                message = self.messages.message(m.key, m.shard)
            except MessageError as exc:
                s = Sample(m.key, row)
                s.fail(str(exc))
                return s
            row["message"] = None if message is None else message.decode("utf-8")
        if not self.secret_exts:
            row["secret_id"] = self.shared_id
            return Sample(m.key, row, data=m.data, message=message)
        missing = [e for e in self.secret_exts if e not in secrets]
        if missing:
            s = Sample(m.key, row)
            s.fail(f"sample {m.key!r} has no secret member {m.key}.{missing[0]} (--secret-ext)")
            return s
        blobs = [secrets[e].data or b"" for e in self.secret_exts]
        row["secret_id"] = secret_id(blobs)
        return Sample(m.key, row, data=m.data, secret_data=blobs, message=message)

    def infer(self, samples: list[Sample]) -> dict[str, float]:
        st = self.settings
        return embed_batch(self.engine, samples, st.size, self.shared, st.upsample, self.message_room, st.layers)

    def verify(self, samples: list[Sample]) -> dict[str, float]:
        st = self.settings
        return verify_batch(self.engine, samples, st.size, self.message_room, st.lossless, st.layers)

    def manifest_extra(self) -> dict[str, Any]:
        return {"secrets": {"shared_sha256": self.secret_hashes, "per_sample_ext": self.secret_exts}}
