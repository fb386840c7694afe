"""The embed job end to end (real tiny model, real shards): outputs, rows, compose/verify maths, reliability cases,
exit codes, resuming rules (config mismatch, new shards), per-sample secrets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from jobkit import (
    bomb_png,
    decode_png,
    job_args,
    jpeg_bytes,
    make_tar,
    photo_shard,
    png_bytes,
    rows,
    tar_members,
    tar_names,
    tree,
)

from pipeline.cli import main
from pipeline.jobs import resample as resample_mod
from pipeline.jobs.batch import quantize
from pipeline.jobs.resample import compose, resize_bilinear, to_network_size
from pipeline.runtime import load_engine

SIZE = 32  # the tiny model's multiple is 4; small images keep the tests fast


def run(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def secret(tmp_path, photo_factory):
    path = tmp_path / "secret.png"
    path.write_bytes(png_bytes(photo_factory(40, 40, seed=99)))
    return path


def embed_args(src, dst, ckpt, secret, *extra) -> list:
    return [
        "embed",
        "--shards",
        src,
        "--out",
        dst,
        "--secret",
        secret,
        "--checkpoint",
        ckpt,
        "--size",
        SIZE,
        "--backend",
        "torch",
        "--batch-size",
        3,
        "--workers",
        2,
        *extra,
    ]


def test_embed_outputs_rows_manifest(tmp_path, tiny_checkpoint, secret, photo_factory) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    photo_shard(src / "shard-000000.tar", 4, seed=0)
    rgba = np.dstack([photo_factory(30, 44, seed=5), np.tile(np.arange(44, dtype=np.uint8) * 5, (30, 1))])
    make_tar(
        src / "shard-000001.tar",
        [("a.png", png_bytes(rgba)), ("a.json", b'{"caption": "x"}'), ("b.jpg", jpeg_bytes(SIZE, SIZE, seed=7))],
    )
    res = run(*embed_args(src, dst, tiny_checkpoint, secret))
    assert res.exit_code == 0, res.output
    assert "embed: 6 images ok, 0 failed, 1 skipped" in res.output and "mean psnr_secret" in res.output
    assert tree(dst) == {  # exactly these files: the job record is DST/manifest.json
        "manifest.json",
        "shard-000000.tar",
        "shard-000000.parquet",
        "shard-000001.tar",
        "shard-000001.parquet",
    }

    r0 = rows(dst / "shard-000000.parquet")
    assert [r["key"] for r in r0] == [f"img0_{i:03d}" for i in range(4)]
    assert all(r["status"] == "ok" and r["role"] == "cover" for r in r0)
    assert all(np.isfinite(r[c]) for r in r0 for c in ("psnr_cover", "ssim_cover", "psnr_secret", "ssim_secret"))
    assert {r["width"] for r in r0} == {56} and {r["height"] for r in r0} == {40}
    assert tar_names(dst / "shard-000000.tar") == [f"img0_{i:03d}.png" for i in range(4)]
    out0 = tar_members(dst / "shard-000000.tar")
    assert decode_png(out0["img0_000.png"]).shape == (40, 56, 3)  # full resolution, not N

    r1 = rows(dst / "shard-000001.parquet")
    assert [(r["member"], r["status"]) for r in r1] == [("a.png", "ok"), ("a.json", "skipped"), ("b.jpg", "ok")]
    assert r1[0]["src_mode"] == "RGBA"
    a_out = decode_png(tar_members(dst / "shard-000001.tar")["a.png"])
    assert a_out.shape == (30, 44, 4) and (a_out[..., 3] == rgba[..., 3]).all()  # alpha put back unchanged

    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["totals"]["images_ok"] == 6 and manifest["config"]["size"] == SIZE
    assert manifest["engine"]["model_sha256"] == r0[0]["model_sha256"] and manifest["versions"]["torch"]
    assert manifest["shards"]["done"] == ["shard-000000", "shard-000001"] and manifest["job_id"] == r0[0]["job_id"]


def test_compose_and_verify_maths(tiny_checkpoint, photo_factory, monkeypatch) -> None:
    """stego_full = round(cover_full + U(stego_N - cover_N)): ``smooth`` is bilinear; ``exact`` gives the engine's
    8-bit stego back when the receiver brings it to N; at N it is the engine's 8-bit stego itself."""
    engine = load_engine("torch", str(tiny_checkpoint), SIZE)
    cover_full = photo_factory(45, 70, seed=1)
    cover_n = to_network_size(cover_full, SIZE)
    secret_n = resize_bilinear(photo_factory(50, 50, seed=2), SIZE)
    stego_n = engine.embed(
        cover_n.transpose(2, 0, 1)[None] / np.float32(255), secret_n.transpose(2, 0, 1)[None] / np.float32(255)
    )[0]
    stego_u8 = quantize(stego_n.transpose(1, 2, 0))
    smooth, sse = compose(cover_full, cover_n, stego_n, "smooth")
    residual = torch.from_numpy(stego_n * 255 - cover_n.transpose(2, 0, 1).astype(np.float32))[None]
    up = F.interpolate(residual, size=(45, 70), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    expected = np.clip(np.rint(cover_full + up), 0, 255)
    assert np.abs(smooth.astype(int) - expected).max() <= 1  # float rounding at .5 only
    assert np.mean(smooth != expected) < 1e-3
    assert sse == float(((smooth.astype(np.int64) - cover_full) ** 2).sum())
    exact, exact_sse = compose(cover_full, cover_n, stego_n)
    assert exact_sse == float(((exact.astype(np.int64) - cover_full) ** 2).sum())
    seen = {k: to_network_size(v, SIZE).astype(int) - stego_u8 for k, v in (("exact", exact), ("smooth", smooth))}
    # exact: off by the full-size image's 8-bit rounding (and clipping, at a few saturated pixels) only
    assert (np.abs(seen["exact"]) > 1).mean() < 0.01 and np.abs(seen["exact"]).mean() < 0.4
    assert np.abs(seen["smooth"]).mean() > 3 * np.abs(seen["exact"]).mean()  # the blur the exact map undoes
    monkeypatch.setattr(resample_mod, "COMPOSE_STRIPE_ROWS", 16)  # stripes of rows (for huge images): same result
    for mode, whole, whole_sse in (("exact", exact, exact_sse), ("smooth", smooth, sse)):
        striped, striped_sse = compose(cover_full, cover_n, stego_n, mode)
        assert np.array_equal(striped, whole) and striped_sse == whole_sse
    same, same_sse = compose(cover_n, cover_n, stego_n)  # at the network size: the engine's stego, 8-bit
    assert np.array_equal(same, stego_u8)
    assert same_sse == float(((same.astype(np.int64) - cover_n) ** 2).sum())


def test_bad_members_give_error_rows_and_exit_3(tmp_path, tiny_checkpoint, secret) -> None:
    src, dst = tmp_path / "data" / "src", tmp_path / "data" / "out"
    good = [jpeg_bytes(36, 36, seed=i) for i in range(4)]
    full = jpeg_bytes(64, 64, seed=9)
    members = [
        ("ok1.jpg", good[0]),
        ("trunc.jpg", full[: len(full) // 2]),
        ("empty.jpg", b""),
        ("text.jpg", b"this is not an image"),
        ("bomb.png", bomb_png()),
        ("../escape.jpg", good[1]),
        ("/abs/path.jpg", good[1]),
        ("ok2.jpg", good[1]),
        ("dup.jpg", good[2]),
        ("dup.png", good[2]),  # second cover for the same key
        ("ok3.jpg", good[3]),
        ("dup.jpg", good[3]),  # the same member name again, later
    ]
    make_tar(src / "bad.tar", members)
    before = tree(tmp_path)
    res = run(*embed_args(src, dst, tiny_checkpoint, secret))
    assert res.exit_code == 3, res.output
    assert "4 images ok, 8 failed" in res.output
    by_member = {}
    for r in rows(dst / "bad.parquet"):
        by_member.setdefault(r["member"], []).append(r)
    assert len(rows(dst / "bad.parquet")) == len(members)
    err = {m: rs[0]["error"] for m, rs in by_member.items() if rs[0]["status"] == "error"}
    assert "corrupt or truncated" in err["trunc.jpg"]
    assert "empty file" in err["empty.jpg"]
    assert "not an image" in err["text.jpg"]
    assert "over the limit of 100 MP" in err["bomb.png"]
    assert "'..'" in err["../escape.jpg"] and "absolute" in err["/abs/path.jpg"]
    assert "duplicate key" in err["dup.png"]
    assert by_member["dup.jpg"][0]["status"] == "ok" and "duplicate member name" in by_member["dup.jpg"][1]["error"]
    assert sorted(tar_names(dst / "bad.tar")) == ["dup.png", "ok1.png", "ok2.png", "ok3.png"]
    # nothing written anywhere but DST
    assert {p for p in tree(tmp_path) - before if not p.startswith("data/out/")} == set()


def test_exit_codes_1_and_2(tmp_path, tiny_checkpoint, secret) -> None:
    src = tmp_path / "src"
    photo_shard(src / "s.tar", 1)
    res = run(*embed_args(tmp_path / "missing", tmp_path / "o1", tiny_checkpoint, secret))
    assert res.exit_code == 2 and f"--shards {tmp_path / 'missing'}: no such folder" in res.output
    res = run(*embed_args(src, tmp_path / "o2", tiny_checkpoint, secret), "--secret", secret)
    assert res.exit_code == 2 and "K=1 secret image(s) per cover, but 2 --secret" in res.output
    bad_secret = tmp_path / "bad.png"
    bad_secret.write_bytes(b"nope")
    res = run(*embed_args(src, tmp_path / "o3", tiny_checkpoint, bad_secret))
    assert res.exit_code == 2 and f"--secret {bad_secret}: not an image" in res.output  # a usage error
    res = run("embed", "--shards", src, "--secret", secret)  # no --out
    assert res.exit_code == 2
    res = run(*embed_args(src, tmp_path / "o4", tiny_checkpoint, secret), "--format", "gif")
    assert res.exit_code == 2
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_rerun_skips_done_redoes_mismatch_and_takes_new_shards(
    tmp_path, tiny_checkpoint, secret, photo_factory
) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    photo_shard(src / "s0.tar", 2, seed=0)
    photo_shard(src / "s1.tar", 2, seed=1)
    assert run(*embed_args(src, dst, tiny_checkpoint, secret)).exit_code == 0
    first = {p: rows(dst / f"{p}.parquet")[0]["job_id"] for p in ("s0", "s1")}

    photo_shard(src / "s2.tar", 3, seed=2)  # the nightly prefix gained a shard
    res = run(*embed_args(src, dst, tiny_checkpoint, secret))
    assert res.exit_code == 0 and "3 images ok" in res.output and "shards 1 done, 2 already done" in res.output
    assert {p: rows(dst / f"{p}.parquet")[0]["job_id"] for p in ("s0", "s1")} == first

    other = tmp_path / "other.png"
    other.write_bytes(png_bytes(photo_factory(40, 40, seed=123)))
    res = run(*embed_args(src, dst, tiny_checkpoint, other))  # another secret: every shard is redone, not mixed
    assert res.exit_code == 0 and "7 images ok" in res.output and "0 already done" in res.output
    new_ids = {rows(dst / f"{p}.parquet")[0]["job_id"] for p in ("s0", "s1", "s2")}
    assert len(new_ids) == 1 and new_ids.isdisjoint(first.values())

    res = run(*embed_args(src, dst, tiny_checkpoint, other, "--format", "webp"))  # another format: redone too
    assert "7 images ok" in res.output
    assert sorted(tar_names(dst / "s2.tar")) == [f"img2_{i:03d}.webp" for i in range(3)]
    res = run(*embed_args(src, dst, tiny_checkpoint, other, "--format", "webp", "--upsample", "smooth"))
    assert "7 images ok" in res.output  # another upsampling: other pixels, redone too

    (src / "s1.tar").unlink()
    photo_shard(src / "s1.tar", 3, seed=5)  # same name, new content: the source fingerprint changed
    res = run(*embed_args(src, dst, tiny_checkpoint, other, "--format", "webp", "--upsample", "smooth"))
    assert "3 images ok" in res.output and "2 already done" in res.output


def test_secret_ext_per_sample_and_folder_input(tmp_path, tiny_checkpoint, photo_factory) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    s1 = png_bytes(photo_factory(33, 33, seed=1))
    make_tar(
        src / "s.tar",
        [
            ("a.jpg", jpeg_bytes(seed=1)),
            ("a.secret.png", s1),
            ("b.jpg", jpeg_bytes(seed=2)),  # no secret member
            ("c.jpg", jpeg_bytes(seed=3)),
            ("c.secret.png", s1),
        ],
    )
    res = run(*job_args("embed", src, dst, tiny_checkpoint, SIZE, "--secret-ext", "secret.png"))
    assert res.exit_code == 3
    r = {x["member"]: x for x in rows(dst / "s.parquet")}
    assert r["a.jpg"]["status"] == "ok" and r["c.jpg"]["status"] == "ok"
    assert r["a.jpg"]["secret_id"] == r["c.jpg"]["secret_id"]
    assert "no secret member b.secret.png" in r["b.jpg"]["error"]
    assert r["a.secret.png"]["status"] == "skipped" and r["a.secret.png"]["role"] == "secret"

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "p.jpg").write_bytes(jpeg_bytes(seed=4))
    (folder / "p.secret.png").write_bytes(s1)
    res = run(*job_args("embed", folder, tmp_path / "out2", tiny_checkpoint, SIZE, "--secret-ext", "secret.png"))
    assert res.exit_code == 0, res.output
    assert tar_names(tmp_path / "out2" / "photos.tar") == ["p.png"]


def test_shipped_samples_run(tmp_path, tiny_checkpoint) -> None:
    """The README's main-job command works on the sample shards shipped in the package (here with the test model)."""
    res = run(*job_args("embed", None, tmp_path / "out", tiny_checkpoint, SIZE, "--samples"))
    assert res.exit_code == 0, res.output
    assert "embed: 6 images ok, 0 failed, 0 skipped | shards 2 done" in res.output
    modes = {r["key"]: r["src_mode"] for r in rows(tmp_path / "out" / "shard-000001.parquet")}
    assert modes == {"rocket": "RGB", "coffee-gray": "L", "chelsea-alpha": "RGBA"}
