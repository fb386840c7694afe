"""The results Parquet: one file per input shard, one row per input member (errors included).

The file is also the shard's commit marker. It is written (atomically) after the output shard is committed, and its
footer carries the job configuration (``sris.job`` key-value metadata): a shard counts as done only when its results
file exists, reads back, says ``complete`` and matches the current job's configuration and the source shard's
fingerprint. Anything else (missing, unreadable, another model/secret/size/format) is redone whole, and
``redo_reason`` says why.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.filesystem import get_fs, join, retry
from pipeline.io.tar_writer import write_bytes_atomic

META_KEY = b"sris.job"

SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string()),
        pa.field("shard", pa.string()),
        pa.field("key", pa.string()),
        pa.field("member", pa.string()),  # the input member name as stored in the shard
        pa.field("role", pa.string()),  # cover | secret | other | shard (a shard-level error)
        pa.field("status", pa.string()),  # ok | error | skipped
        pa.field("error", pa.string()),  # why (error), or what the member was used for (skipped)
        pa.field("src_sha256", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("src_mode", pa.string()),  # PIL mode of the source (RGB, L, RGBA, P, CMYK, I;16...)
        pa.field("out_shard", pa.string()),
        pa.field("out_key", pa.string()),  # member name in out_shard (KEY.png, KEY.secret.png...)
        pa.field("secret_id", pa.string()),  # sha256 prefix(es) of the secret(s), "+"-joined when K > 1
        pa.field("psnr_cover", pa.float64()),  # stego vs cover at full resolution, dB (RGB, 0-255)
        pa.field("ssim_cover", pa.float64()),  # at the network size N
        pa.field("psnr_secret", pa.float64()),  # revealed vs secret at N, mean over the K secrets
        pa.field("ssim_secret", pa.float64()),
        *(pa.field(f"psnr_secret{j}", pa.float64()) for j in range(1, 5)),  # each secret's, K = 1..4; null past K
        # extract: how strongly the image carries the model's mark (model.detect), and that score against the
        # threshold calibrated for the model (its false-positive rate: the model card); null for other jobs.
        pa.field("mark_score", pa.float64()),
        pa.field("marked", pa.bool_()),
        # The digital layer (models with one): where the secret came from (a level's name, or "analog" where no
        # level decoded): at embed, what the verification read from the stego as written; at extract, what was
        # revealed. Each level's decode status, the per-image message (UTF-8, undecodable bytes escaped) and the
        # key's id (never the key).
        pa.field("layer", pa.string()),
        pa.field("level_base", pa.bool_()),
        pa.field("level_main", pa.bool_()),
        pa.field("level_top", pa.bool_()),
        pa.field("message", pa.string()),
        pa.field("key_id", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("precision", pa.string()),
        pa.field("model_sha256", pa.string()),
        # Per-image times in ms. Decoding and inference work on batches: decode_ms and infer_ms are the batch's time
        # divided by its images (so a column sums to its stages' time, and the images of one batch share a value).
        # decode_ms includes the sample's own secrets (--secret-ext); infer_ms is embed's preprocess + engine +
        # compose + verify, or extract's preprocess + reveal. encode_ms is this image's own encoding.
        pa.field("decode_ms", pa.float64()),
        pa.field("infer_ms", pa.float64()),
        pa.field("encode_ms", pa.float64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def new_row(**values: Any) -> dict[str, Any]:
    """A row with every column present (None where not given); unknown columns are an error."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown results columns: {sorted(unknown)}")
    row = dict.fromkeys(COLUMNS)
    row["created_at"] = datetime.now(UTC)
    row.update(values)
    return row


def results_name(shard_name: str) -> str:
    return f"{shard_name}.parquet"


def to_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> pa.Table:
    """The rows (``new_row``'s columns) as a table of ``SCHEMA``, ``meta`` in its footer."""
    columns = [arrow_column([r.get(f.name) for r in rows], f.type) for f in SCHEMA]
    table = pa.Table.from_arrays(columns, schema=SCHEMA)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def arrow_column(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Python values (None: null) -> an Arrow array of ``kind`` (string, bool, int32, float64 or UTC timestamp in
    us), built from its buffers: converting Python objects with ``pa.array`` or ``Table.from_pylist`` first imports
    pandas (0.3-0.4 s of a job's start, holding the GIL) to ask whether they are pandas objects. A value of the
    wrong type raises, as pyarrow's conversion does."""
    n = len(values)
    valid = np.fromiter((v is not None for v in values), bool, n)
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if pa.types.is_string(kind):
        data = [b"" if v is None else v.encode("utf-8") for v in values]
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(np.fromiter(map(len, data), np.int64, n), out=offsets[1:], dtype=np.int32)
        buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    elif pa.types.is_boolean(kind):
        bits = np.fromiter((v is not None and _bool(v) for v in values), bool, n)
        buffers = [bitmap, pa.py_buffer(np.packbits(bits, bitorder="little"))]
    elif pa.types.is_timestamp(kind) and kind.unit == "us":
        buffers = [bitmap, pa.py_buffer(np.fromiter((_micros(v) for v in values), np.int64, n))]
    elif kind in (pa.int32(), pa.int64(), pa.float64()):
        dtype = kind.to_pandas_dtype()
        buffers = [bitmap, pa.py_buffer(np.fromiter((0 if v is None else _number(v) for v in values), dtype, n))]
    else:
        raise TypeError(f"no conversion to {kind}")
    return pa.Array.from_buffers(kind, n, buffers, null_count=nulls)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool | np.bool_):
        raise TypeError(f"expected a bool, got {type(v).__name__}")
    return bool(v)


def _number(v: Any) -> Any:
    if isinstance(v, str | bytes | bool):  # numpy would parse a numeric string
        raise TypeError(f"expected a number, got {type(v).__name__}")
    return v


def _micros(v: datetime | None) -> int:
    if v is None:
        return 0
    if v.tzinfo is None:  # naive: taken as UTC, as pyarrow takes it
        v = v.replace(tzinfo=UTC)
    return (v - _EPOCH) // timedelta(microseconds=1)


def write_results(dst: str, shard_name: str, rows: list[dict[str, Any]], meta: dict[str, Any], job_id: str) -> str:
    """Write ``DST/SHARD.parquet`` atomically; ``meta`` (JSON-able) goes into the footer. Returns the URL."""
    buf = io.BytesIO()
    pq.write_table(to_table(rows, {**meta, "complete": True, "rows": len(rows)}), buf, compression="zstd")
    return write_bytes_atomic(dst, results_name(shard_name), buf.getvalue(), job_id)


def read_results_state(dst: str, shard_name: str) -> tuple[bool, dict[str, Any] | None]:
    """(whether ``DST/SHARD.parquet`` exists, its footer metadata or None when missing or unreadable)."""
    fs, base = get_fs(dst)
    path = join(base, results_name(shard_name))
    found = False

    def read() -> dict[str, Any] | None:
        nonlocal found
        if not fs.exists(path):
            return None
        found = True
        with fs.open(path, "rb") as f:
            md = pq.read_metadata(f).metadata or {}
        return json.loads(md[META_KEY]) if META_KEY in md else None

    try:
        meta = retry(read, f"reading {path}")
    except (OSError, ValueError, pa.ArrowException):
        meta = None
    return found, meta


def is_done(meta: dict[str, Any] | None, config_hash: str, source_fingerprint: str) -> bool:
    """Whether a shard's results say it was completed under the same configuration from the same source bytes."""
    return bool(
        meta
        and meta.get("complete") is True
        and meta.get("config_hash") == config_hash
        and meta.get("source_fingerprint") == source_fingerprint
    )


# How a configuration key is named in a redo reason (the others under their own name).
_CONFIG_LABELS = {
    "model_sha256": "model",
    "secrets_sha256": "secret images",
    "secret_ext": "secret-ext",
    "references_sha256": "reference images",
    "jpeg_quality": "jpeg-quality",
}


def _show(value: Any) -> str:
    """A configuration value for a message: hashes shortened to 12 characters, lists joined, None as 'none'."""
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return "+".join(_show(v) for v in value)
    text = str(value)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["format png -> webp", ...]``: the keys where two job configurations differ, in a stable order."""
    keys = [*new, *(k for k in old if k not in new)]
    return [
        f"{_CONFIG_LABELS.get(k, k)} {_show(old.get(k))} -> {_show(new.get(k))}"
        for k in keys
        if old.get(k) != new.get(k)
    ]


def redo_reason(
    meta: dict[str, Any] | None,
    config: dict[str, Any],
    config_hash: str,
    source_fingerprint: str,
    exists: bool = True,
) -> str | None:
    """Why a shard with these results must be (re)done; None when it is done (``is_done``).

    ``exists`` says whether the results file is there at all: a missing one is a shard not done yet ("new"), a
    present one whose footer cannot be read is "results unreadable".
    """
    if is_done(meta, config_hash, source_fingerprint):
        return None
    if meta is None:
        return "results unreadable" if exists else "new"
    if meta.get("complete") is not True:
        return "results incomplete"
    if meta.get("config_hash") != config_hash:
        old = meta.get("config")
        changes = config_changes(old, config) if isinstance(old, dict) else []
        return "settings changed: " + (", ".join(changes) if changes else "the job configuration differs")
    return "the source shard changed since it was done"
