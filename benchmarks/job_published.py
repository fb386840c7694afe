#!/usr/bin/env python
"""What a receiver reads from the embed job's stored stegos after publishing, for one or two checkouts.

    python benchmarks/job_published.py --data PHOTOS [--images 288] [--repo before=PATH --repo after=PATH]

The held-out photos' 256 px crops (``make_shard.py``'s, seed 0) hide the first training photo's crop
(``job_speed.py``'s secret) in ``python -m pipeline embed`` of each checkout (``--repo``; default: this one); each
stored stego is then republished (PNG, JPEG 90 / 75 / 60 / 50, WebP 80, resized by 0.75 and 0.5 with Lanczos) and
read by ``python -m pipeline extract --reference`` of the same checkout. Counted per condition: the images each level
gives the secret from (none: no level read), and the mean secret PSNR over the images a level read. Prints a table
and writes a JSON record (``job_published-`` and the labels) in ``benchmarks/results/``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import click
import pyarrow.parquet as pq
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_shard import crops, photo_split, secret_photo, write_shard  # noqa: E402 (beside this script)

CONDITIONS = ("png", "jpeg:90", "jpeg:75", "jpeg:60", "jpeg:50", "webp:80", "resize:0.75", "resize:0.5")
LEVELS = ("top", "main", "base")


def published(data: bytes, how: str) -> tuple[bytes, str]:
    """A stored stego republished as ``how`` (KIND:ARG) -> (bytes, extension)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    kind, _, arg = how.partition(":")
    buf = io.BytesIO()
    if kind == "jpeg":
        img.save(buf, format="JPEG", quality=int(arg))
        return buf.getvalue(), "jpg"
    if kind == "webp":
        img.save(buf, format="WEBP", quality=int(arg))
        return buf.getvalue(), "webp"
    if kind == "resize":
        img = img.resize((round(img.width * float(arg)), round(img.height * float(arg))), Image.LANCZOS)
    img.save(buf, format="PNG")
    return buf.getvalue(), "png"


def run(repo: Path, args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args, "--no-progress"], cwd=repo, env=env, text=True,
                          capture_output=True)  # fmt: skip
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"pipeline {' '.join(args)} failed: {proc.stderr[-2000:]}")


def condition(repo: Path, stegos: list[tuple[str, bytes]], how: str, secret: Path, work: Path) -> dict:
    """Republish ``stegos`` as ``how``, extract them with ``repo`` -> the levels read and the secret PSNR."""
    src = work / how.replace(":", "") / "in"
    src.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src / "shard-000000.tar", "w") as tf:
        for name, data in stegos:
            out, ext = published(data, how)
            info = tarfile.TarInfo(f"{name.rsplit('.', 1)[0]}.{ext}")
            info.size = len(out)
            tf.addfile(info, io.BytesIO(out))
    dst = work / how.replace(":", "") / "out"
    run(repo, ["extract", "--shards", str(src), "--out", str(dst), "--reference", str(secret), "--force"])
    t = pq.read_table(dst / "shard-000000.parquet").to_pandas()
    read = t[t.layer.isin(LEVELS)]
    return {
        "levels": {lv: int((t.layer == lv).sum()) for lv in LEVELS} | {"none": int(len(t) - len(read))},
        "psnr_secret_read": float(read.psnr_secret.mean()) if len(read) else None,
    }


@click.command()
@click.option("--data", required=True, help="Folder of photos (its held-out split is cropped).")
@click.option("--images", default=288, show_default=True)
@click.option("--repo", "repos", multiple=True, help="Checkouts to compare, as LABEL=PATH [default: this one].")
@click.option("--work", default="/tmp/sris-job-published", show_default=True)
@click.option("--out", default=str(HERE / "results"), show_default=True)
def main(data: str, images: int, repos: tuple[str, ...], work: str, out: str) -> None:
    checkouts = dict(r.split("=", 1) for r in repos) or {"after": str(HERE.parent)}
    train, held_out = photo_split(data)
    work_dir = Path(work)
    shard = write_shard(work_dir / "covers" / "bench-000000.tar", crops(held_out, images, 256, 0), png_level=1)
    secret = work_dir / "secret.png"
    Image.fromarray(secret_photo(train[0])).save(secret)
    results: dict[str, dict] = {}
    for label, path in checkouts.items():
        stored = work_dir / label / "stegos"
        run(Path(path), ["embed", "--shards", str(shard.parent), "--out", str(stored), "--secret", str(secret),
                         "--force"])  # fmt: skip
        with tarfile.open(stored / "bench-000000.tar") as tf:
            stegos = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]
        results[label] = {h: condition(Path(path), stegos, h, secret, work_dir / label) for h in CONDITIONS}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"job_published-{'-'.join(checkouts)}.json").write_text(json.dumps(results, indent=1))
    click.echo("condition     " + "  ".join(f"{label}: top/main/base/none, PSNR read" for label in checkouts))
    for h in CONDITIONS:
        cells = []
        for label in checkouts:
            r = results[label][h]
            psnr = r["psnr_secret_read"]
            cells.append(
                f"{'/'.join(str(v) for v in r['levels'].values()):>18} {psnr if psnr is None else round(psnr, 2)}"
            )
        click.echo(f"{h:12}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
