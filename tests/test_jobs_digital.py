"""The digital layer through the batch jobs: full-size photos embedded with a key and a message per image, then
published (JPEG 90, halved and JPEG 90, WebP 80) and extracted: the secret, the mark, the message and the layer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from digital_kit import sample_photos
from jobkit import job_args, make_tar, png_bytes, rows, tar_members
from PIL import Image

from pipeline.cli import main
from pipeline.model.checkpoint import load_model


def full_size_shard(path: Path) -> Path:
    """The sample photos at about 1 MP (1152 x 864), as a shard of PNGs."""
    members = []
    for i, photo in enumerate(sample_photos()[:3]):
        big = np.asarray(Image.fromarray(photo).resize((1152, 864), Image.BICUBIC))
        members.append((f"photo{i}.png", png_bytes(big)))
    return make_tar(path, members)


def published(stego: bytes, how: str) -> bytes:
    img = Image.open(io.BytesIO(stego)).convert("RGB")
    buf = io.BytesIO()
    if how == "jpeg90":
        img.save(buf, format="JPEG", quality=90)
    elif how == "half-jpeg90":
        img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(buf, format="JPEG", quality=90)
    else:
        img.save(buf, format="WEBP", quality=80)
    return buf.getvalue()


def run(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(embed output folder, key file, secret file): the 1 MP photos hide a photo (the rocket sample) with the
    message {key}."""
    root = tmp_path_factory.mktemp("digital-job")
    shards = root / "in"
    full_size_shard(shards / "shard-000000.tar")
    secret = root / "secret.png"
    secret.write_bytes(png_bytes(sample_photos()[3]))
    key = root / "job.key"
    run(["keygen", str(key)])
    out = root / "out"
    run(job_args("embed", shards, out, "k1", 256, "--secret", secret, "--key-file", key, "--message", "{key}"))
    return out, key, secret


def test_the_model_shipped_as_default_carries_the_digital_layer() -> None:
    assert load_model("k1").digital is not None


def test_embed_rows_verify_the_level_and_name_the_key_only_by_id(embedded) -> None:
    out, key, _ = embedded
    key_hex = key.read_text().strip()
    table = rows(out / "shard-000000.parquet")
    assert [r["status"] for r in table] == ["ok"] * 3
    assert all(r["layer"] == "top" and r["message"] == r["key"] for r in table)
    assert len({r["key_id"] for r in table}) == 1 and table[0]["key_id"] not in key_hex
    manifest = (out / "manifest.json").read_text()
    assert key_hex not in manifest and table[0]["key_id"] in manifest
    assert not any("public key" in w for w in json.loads(manifest)["warnings"])


def test_a_receiver_reads_each_full_size_stego_as_the_embed_verified_it(embedded, tmp_path) -> None:
    """Verify's figures are a receiver's: extract on the 1 MP stegos as written finds the level and the secret PSNR
    that the embed rows report (the reader takes the exact area average that the upsampling inverts)."""
    out, key, secret = embedded
    got = tmp_path / "revealed"
    run(job_args("extract", out, got, "k1", 256, "--reference", secret, "--key-file", key))
    sent = {r["key"]: r for r in rows(out / "shard-000000.parquet")}
    for r in rows(got / "shard-000000.parquet"):
        assert r["layer"] == sent[r["key"]]["layer"] == "top"
        assert r["psnr_secret"] == pytest.approx(sent[r["key"]]["psnr_secret"], abs=1e-6)


def test_a_mirrored_full_size_stego_reads_as_written(embedded, tmp_path) -> None:
    """Mirrored and nothing else: the reader tries the exact area average mirrored back before its search, and the
    top level comes back whole (its search on a smaller copy lost it)."""
    out, key, secret = embedded
    stegos = tar_members(out / "shard-000000.tar")
    flipped = []
    for name, data in stegos.items():
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).transpose(Image.FLIP_LEFT_RIGHT).save(buf, format="PNG")
        flipped.append((name, buf.getvalue()))
    make_tar(tmp_path / "mirrored" / "shard-000000.tar", flipped)
    got = tmp_path / "revealed"
    run(job_args("extract", tmp_path / "mirrored", got, "k1", 256, "--reference", secret, "--key-file", key))
    sent = {r["key"]: r for r in rows(out / "shard-000000.parquet")}
    for r in rows(got / "shard-000000.parquet"):
        assert r["layer"] == "top" and r["psnr_secret"] == pytest.approx(sent[r["key"]]["psnr_secret"], abs=1e-6)


@pytest.mark.parametrize("how", ["jpeg90", "half-jpeg90", "webp80"])
def test_published_stegos_give_the_secret_the_mark_and_the_message(embedded, tmp_path, how) -> None:
    out, key, secret = embedded
    stegos = tar_members(out / "shard-000000.tar")
    make_tar(
        tmp_path / "pub" / "shard-000000.tar",
        [(n.replace(".png", ".webp" if how == "webp80" else ".jpg"), published(d, how)) for n, d in stegos.items()],
    )
    got = tmp_path / "revealed"
    run(job_args("extract", tmp_path / "pub", got, "k1", 256, "--reference", secret, "--key-file", key))
    table = rows(got / "shard-000000.parquet")
    assert all(r["marked"] for r in table), table
    assert all(r["message"] == r["key"] for r in table)
    assert all(r["layer"] in ("base", "main", "top") for r in table)
    assert min(r["psnr_secret"] for r in table) >= 26


def test_a_wrong_key_reads_no_mark_and_no_message(embedded, tmp_path) -> None:
    out, _, secret = embedded
    other = tmp_path / "other.key"
    run(["keygen", str(other)])
    got = tmp_path / "revealed"
    run(job_args("extract", out, got, "k1", 256, "--reference", secret, "--key-file", other))
    table = rows(got / "shard-000000.parquet")
    assert not any(r["marked"] for r in table) and all(r["message"] is None for r in table)
    assert all(r["layer"] is None for r in table)  # and the analog path, with a share of 0, carries nothing


def test_stegos_stored_at_the_grid_size_read_as_verified_where_the_clip_bit(tmp_path) -> None:
    """Covers at the grid size with blown highlights and crushed shadows: storage's clip would flip readings, the
    job rewrites those blocks (``CpuPath.settle``) and its check shares that reading. Extract finds what the embed
    rows report."""
    shards, secret, key = tmp_path / "in", tmp_path / "secret.png", tmp_path / "job.key"
    photos = [np.clip((p.astype(np.float32) - 80) * 1.5 + 80, 0, 255).astype(np.uint8) for p in sample_photos()[:3]]
    make_tar(shards / "shard-000000.tar", [(f"hard{i}.png", png_bytes(p)) for i, p in enumerate(photos)])
    secret.write_bytes(png_bytes(sample_photos()[3]))
    run(["keygen", str(key)])
    out, got = tmp_path / "out", tmp_path / "revealed"
    run(job_args("embed", shards, out, "k1", 256, "--secret", secret, "--key-file", key, "--message", "{key}"))
    run(job_args("extract", out, got, "k1", 256, "--reference", secret, "--key-file", key))
    sent = {r["key"]: r for r in rows(out / "shard-000000.parquet")}
    assert all(r["layer"] == "top" and r["message"] == r["key"] for r in sent.values())
    for r in rows(got / "shard-000000.parquet"):
        assert r["layer"] == "top" and r["message"] == r["key"]
        assert r["psnr_secret"] == pytest.approx(sent[r["key"]]["psnr_secret"], abs=1e-6)


def test_a_batch_of_grid_size_and_larger_covers_written_alone_reads_as_its_rows_say(tmp_path) -> None:
    """``--layers digital`` on one batch that mixes covers at the grid size (stored there as the layer writes
    them: ``CpuDigitalStage.store``, the C block writer where built) and a larger one (composed at full size)."""
    shards, secret, key = tmp_path / "in", tmp_path / "secret.png", tmp_path / "job.key"
    photos = sample_photos()
    big = np.asarray(Image.fromarray(photos[1]).resize((640, 480), Image.BICUBIC))
    members = [("grid0.png", png_bytes(photos[0])), ("big.png", png_bytes(big)), ("grid2.png", png_bytes(photos[2]))]
    make_tar(shards / "shard-000000.tar", members)
    secret.write_bytes(png_bytes(photos[3]))
    run(["keygen", str(key)])
    out, got = tmp_path / "out", tmp_path / "revealed"
    digital = ("--layers", "digital", "--key-file", key)
    run(job_args("embed", shards, out, "k1", 256, "--secret", secret, "--message", "{key}", *digital))
    run(job_args("extract", out, got, "k1", 256, "--reference", secret, *digital))
    sent = {r["key"]: r for r in rows(out / "shard-000000.parquet")}
    assert [sent[k]["status"] for k in ("grid0", "big", "grid2")] == ["ok"] * 3
    assert sent["grid0"]["layer"] == sent["big"]["layer"] == "top"  # the textured photos carry every level
    for r in rows(got / "shard-000000.parquet"):
        assert r["layer"] == sent[r["key"]]["layer"]
        assert r["message"] == (r["key"] if r["layer"] else None)
    stego = tar_members(out / "shard-000000.tar")
    assert Image.open(io.BytesIO(stego["grid0.png"])).size == (256, 256)


def test_the_check_worker_starts_with_the_job_and_ends_where_the_job_needs_none(monkeypatch) -> None:
    """The embed job starts its LDPC worker before its model is loaded; once it is, the worker is told the layer's
    codes where the job checks its stegos in NumPy, and ended where it does not (JPEG output, nothing to do)."""
    from pipeline.jobs.batch import JobSettings
    from pipeline.jobs.cli import _decoder_for, _start_decoder_early
    from pipeline.model.digital import channel
    from pipeline.runtime.digital_engine import DigitalEngine, network_free_model

    monkeypatch.setenv("SRIS_DECODE_WORKER", "1")
    monkeypatch.setattr(channel, "WORKER", channel.DecodeWorkers())  # this test's own pool, one worker
    WORKER = channel.WORKER
    engine = DigitalEngine(network_free_model(None, "all", 256), 256)
    codes = tuple(engine.cpu_digital.code.code_shape(i) for i in range(len(engine.digital_config.levels)))
    try:
        for settings, work, kept in [
            (JobSettings(size=256), True, True),
            (JobSettings(size=256, fmt="jpeg"), True, False),
            (JobSettings(size=256), False, False),
        ]:
            _start_decoder_early()
            (worker,) = WORKER._workers
            started = worker._proc
            assert started is not None and started.poll() is None
            _decoder_for(engine, settings, work)
            if kept:
                assert worker._proc is started and worker._codes == codes
            else:
                assert started.poll() is not None and worker._proc is None
    finally:
        WORKER.stop()
