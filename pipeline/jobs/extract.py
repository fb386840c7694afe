"""The extract job: reveal the hidden secret(s) of every image of every shard (typically an embed job's output).

Output per input shard: a shard holding ``KEY.secret.png`` (K = 1) or ``KEY.secret1.png`` ... ``KEY.secretK.png``
at the network size, and a results Parquet (psnr/ssim_secret against ``--reference`` images when given). Images go
to the model as they are: a mirrored stego is un-mirrored by the model (its mirror-sync pattern), so the secret comes
back in its original orientation; EXIF orientation of the input is applied at decoding like everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.io.decode import CpuDecoder, ImageDecodeError
from pipeline.io.encode import read_png_text
from pipeline.io.tar_reader import Member
from pipeline.jobs.batch import JobSettings, Sample, prepare_secrets, reveal_batch, secret_id
from pipeline.jobs.common import (
    MANIFEST_NAME,
    MODEL_NAME_KEY,
    MODEL_SHA256_KEY,
    JobError,
    JobUsageError,
    ShardJob,
    sha256_hex,
)

if TYPE_CHECKING:
    from pipeline.runtime import Engine


def check_reference_count(references: int, k: int) -> None:
    """Refuse (``JobUsageError``) --reference images that are not one per secret the model reveals (none is fine)."""
    if references and references != k:
        raise JobUsageError(
            f"this model reveals K={k} secret image(s) per image, but {references} --reference were given"
        )


class ExtractJob(ShardJob):
    mode = "extract"

    def __init__(
        self,
        src: str,
        dst: str,
        engine: Engine,
        settings: JobSettings,
        decoder: CpuDecoder,
        references: list[bytes] | None = None,
        force: bool = False,
        job_id: str | None = None,
    ) -> None:
        super().__init__(src, dst, engine, settings, decoder, force, job_id)
        references = list(references or [])
        check_reference_count(len(references), engine.info.num_secrets)
        # Stegos whose PNG metadata names their model, and those of another model, by (name, sha256).
        self.marked_by_model = 0
        self.foreign: dict[tuple[str | None, str], int] = {}
        self.reference_hashes = [sha256_hex(b) for b in references]
        self.reference_id = secret_id(references) if references else None
        self.references: np.ndarray | None = None
        if references:
            try:
                self.references = prepare_secrets(references, settings.size, settings.max_pixels)
            except ImageDecodeError as exc:
                raise JobError(f"cannot use the --reference image: {exc}") from exc

    def config(self) -> dict[str, Any]:
        return {
            "mode": "extract",
            "model_sha256": self.engine.info.model_sha256,
            "size": self.settings.size,
            "format": self.settings.fmt,
            "references_sha256": self.reference_hashes,
            **self.digital_config(),
        }

    def job_warnings(self) -> list[str]:
        """The job's warnings, and (when the source's job record said nothing) how many stegos name another model in
        their PNG metadata."""
        warnings = super().job_warnings()
        if not warnings and self.foreign:
            name, sha = max(self.foreign, key=self.foreign.get)  # the other model most of them name
            n = sum(self.foreign.values())
            what = f"{n} of the {self.marked_by_model} stegos whose PNG metadata names their model"
            warnings.append(other_model_warning({"name": name, "sha256": sha}, self.engine.info, what))
        return warnings

    def plan(self) -> list:
        todo = super().plan()
        made_by = source_model(self.src)
        if made_by and made_by.get("sha256") and made_by["sha256"] != self.engine.info.model_sha256:
            self.warnings.append(other_model_warning(made_by, self.engine.info, f"the stegos in {self.src}"))
        return todo

    def member_samples(self, group: list[Member]) -> Iterator[Sample]:
        first = next((m for m in group if self.role(m.ext) == "cover"), None)
        for m in group:
            role = self.role(m.ext)
            if m is first:
                self._note_model(m.data or b"")
                row = self.base_row(m, "stego")
                row["secret_id"] = self.reference_id
                yield Sample(m.key, row, data=m.data)
            elif role == "cover":
                yield self.error_sample(
                    m,
                    "stego",
                    f"duplicate key {m.key!r}: the sample already has an image "
                    f"({first.name}); its outputs would collide",
                )
            else:
                yield self.skipped_sample(m, role, f"not an image ({m.ext or 'no extension'}): not processed")

    def _note_model(self, data: bytes) -> None:
        """Count a stego whose PNG metadata names its model, and those that name another than the one extracting."""
        text = read_png_text(data)
        sha = text.get(MODEL_SHA256_KEY)
        if sha:
            self.marked_by_model += 1
            if sha != self.engine.info.model_sha256:
                key = (text.get(MODEL_NAME_KEY) or None, sha)
                self.foreign[key] = self.foreign.get(key, 0) + 1

    def infer(self, samples: list[Sample]) -> dict[str, float]:
        return reveal_batch(self.engine, samples, self.settings.size, self.references, self.settings.layers)

    def manifest_extra(self) -> dict[str, Any]:
        return {"references_sha256": self.reference_hashes, "source_model": source_model(self.src)}


def source_model(src: str) -> dict[str, Any] | None:
    """The model that made the stegos in ``src``, from the embed job's record there (``SRC/manifest.json``): its
    name and sha256; None where ``src`` holds no embed job's record."""
    import json

    from pipeline.io.shards import read_bytes

    try:
        record = json.loads(read_bytes(f"{src.rstrip('/')}/{MANIFEST_NAME}"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("mode") != "embed":
        return None
    model = record.get("model") or {"name": None, "sha256": (record.get("config") or {}).get("model_sha256")}
    return {"name": model.get("name"), "sha256": model.get("sha256")}


def other_model_warning(made_by: dict[str, Any], info: Any, what: str) -> str:
    """The warning for stegos made by another model than the one extracting: what it reads is not their secret."""

    def name(n: str | None, sha: str) -> str:
        return f"{n} (sha256 {sha[:12]})" if n else f"sha256 {sha[:12]}"

    from pipeline.model.checkpoint import SHIPPED

    theirs = made_by.get("name")
    fix = f"--checkpoint {theirs}" if theirs in SHIPPED else "--checkpoint with that model's file"
    return (
        f"{what} were made by model {name(theirs, made_by['sha256'])}, not by the model extracting, "
        f"{name(info.model_name, info.model_sha256)}: what it reads is not their secret (extract with {fix})"
    )
