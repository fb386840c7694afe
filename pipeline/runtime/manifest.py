"""The engines folder: one subfolder per model, each with ``manifest.json`` (what was built from what), a lock for
concurrent builders, and its engine files, all written atomically.

Layout of an engines folder (``--engines-dir``, default ``engines``)::

    engines/0502becd8598/                    the engines of one model: the first 12 hex digits of its sha256
    engines/0502becd8598/manifest.json       {"format": ..., "engines": {KEY: entry, ...}}
    engines/0502becd8598/embed-256-fp32.onnx      ONNX (onnxruntime backend; also the source of the OpenVINO IR)
    engines/0502becd8598/embed-256-bf16.xml/.bin  OpenVINO IR whose inference precision is bf16
    engines/0502becd8598/embed-256-fp16.trt.ep    TensorRT FP16 engine inside a torch ExportedProgram
    engines/0502becd8598/.lock               flock(2) lock: shared while loading, exclusive while building
    engines/f84858cf85b6/...                 another model's engines, beside them

A KEY is ``FORMAT/PRECISION/SIZE/PART`` (``onnx/fp32/256/embed``). Each model finds (or builds, on first use) its
engines in its own subfolder, so models take turns in one engines folder with no rebuild. An entry whose checkpoint
is not the folder's model (a folder copied by hand) is refused, never silently used or replaced. Every file is
written under a temporary name and renamed into place, and the manifest is rewritten the same way, so a reader
never sees half a file. Folders of the older one-model layout (``engines/manifest.json``) are refused with what to
do (``check_layout``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.core.files import write_atomic
from pipeline.runtime.errors import EngineError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = "sris-pipeline/engines-1"
PARTS = ("embed", "reveal")
EXTENSIONS = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".trt.ep"}

# Names of the graph inputs and outputs of each part; they are also the forward() argument names of
# EmbedModule / RevealModule, which torch.export's dynamic_shapes are keyed by.
PART_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "embed": (("cover", "secrets"), ("stego",)),
    "reveal": (("stego",), ("secrets",)),
}


MODEL_FOLDER_DIGITS = 12  # of the checkpoint's sha256: the name of a model's subfolder


def model_folder(engines_dir: str | os.PathLike[str], checkpoint_sha256: str) -> Path:
    """The subfolder of ``engines_dir`` that holds the engines of the checkpoint with this sha256."""
    return Path(engines_dir) / checkpoint_sha256[:MODEL_FOLDER_DIGITS]


def model_folders(engines_dir: str | os.PathLike[str]) -> list[Path]:
    """The model subfolders of ``engines_dir`` that hold a manifest, sorted by name."""
    root = Path(engines_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def check_layout(engines_dir: str | os.PathLike[str]) -> None:
    """Refuse an engines folder of the older one-model layout (``manifest.json`` at its top), saying what to do."""
    root = Path(engines_dir)
    if (root / MANIFEST).is_file():
        raise EngineError(
            f"{root} holds engines in the older one-model layout ({root / MANIFEST}); engines now live in one "
            f"subfolder per model ({os.path.join(root, '<sha256 prefix>', '')}) and are built there on first use. "
            f"Delete {root / MANIFEST} and the engine files beside it (or point --engines-dir at a new folder)"
        )


def engine_key(fmt: str, precision: str, size: int, part: str) -> str:
    return f"{fmt}/{precision}/{size}/{part}"


def engine_filename(fmt: str, precision: str, size: int, part: str) -> str:
    """``embed-256-fp32.onnx``: the file name says part, size and precision; the extension says the format."""
    return f"{part}-{size}-{precision}{EXTENSIONS[fmt]}"


@dataclass
class EngineEntry:
    """One built engine (one part, one format, one precision, one size) as recorded in the manifest.

    ``batch_max`` None means any batch (ONNX, OpenVINO); TensorRT engines have a fixed range. ``extra_files``
    maps companion files (the OpenVINO ``.bin`` weights) to their sha256.
    """

    format: str
    part: str
    precision: str
    size: int
    file: str
    sha256: str
    checkpoint_sha256: str
    checkpoint: str
    channels: int
    num_secrets: int
    inputs: dict[str, list[int | None]]
    outputs: dict[str, list[int | None]]
    batch_min: int = 1
    batch_opt: int | None = None
    batch_max: int | None = None
    extra_files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    verify_max_abs_diff: float | None = None
    build_seconds: float = 0.0
    created_at: str = ""

    @property
    def key(self) -> str:
        return engine_key(self.format, self.precision, self.size, self.part)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def read_manifest(engines_dir: str | os.PathLike[str]) -> dict[str, EngineEntry]:
    """The entries of ``engines_dir/manifest.json`` by key; empty when there is no manifest yet."""
    path = Path(engines_dir) / MANIFEST
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"cannot read {path}: {exc}. Delete it and rebuild with "
            f"`python build_engines.py --out {Path(engines_dir).parent}`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EngineError(f"{path} is not an sris-pipeline engines manifest (format {FORMAT!r} expected)")
    try:
        return {k: EngineEntry.from_dict(v) for k, v in payload.get("engines", {}).items()}
    except TypeError as exc:
        raise EngineError(f"{path} has a malformed entry ({exc}); rebuild with `python build_engines.py`") from exc


def write_manifest(engines_dir: str | os.PathLike[str], entries: dict[str, EngineEntry]) -> Path:
    """Rewrite the manifest atomically (call it while holding the exclusive lock)."""
    payload = {"format": FORMAT, "engines": {k: entries[k].to_dict() for k in sorted(entries)}}
    path = Path(engines_dir) / MANIFEST
    atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, data)  # mode 0644: other users' jobs read the manifest too


@contextlib.contextmanager
def engines_lock(engines_dir: str | os.PathLike[str], exclusive: bool) -> Iterator[None]:
    """Hold ``engines_dir/.lock``: shared to load engines, exclusive to build them or rewrite the manifest.

    flock(2) locks are released by the kernel when a process dies, so a crashed builder never leaves the folder
    locked. A read-only folder (engines shipped on a read-only volume) can still be read: no lock is needed there
    because nobody can write to it.
    """
    import fcntl

    engines_dir = Path(engines_dir)
    if exclusive:
        engines_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(engines_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exclusive or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT):
            raise EngineError(f"cannot lock the engines folder {engines_dir}: {exc}") from exc
        yield  # read-only (or not there yet): nothing can change under us
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def staging_dir(engines_dir: Path) -> Iterator[Path]:
    """A temporary folder inside ``engines_dir`` (same filesystem, so the final rename is atomic)."""
    import shutil

    engines_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=engines_dir, prefix=".build-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rebuild_command(checkpoint: str, size: int, fmt: str, precision: str, engines_dir: str | os.PathLike[str]) -> str:
    """The command that builds these engines (``engines_dir``: the engines folder, not the model's subfolder)."""
    return (
        f"python build_engines.py --checkpoint {checkpoint} --size {size} --targets {fmt} "
        f"--precision {precision} --out {engines_dir}"
    )
