"""The extract job: secrets come back at N x N with the right names; orientation contract; K > 1 naming."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from jobkit import decode_png, job_args, make_tar, photo_shard, png_bytes, rows, tar_members, tar_names
from PIL import Image

from pipeline.cli import main
from pipeline.jobs.batch import quantize
from pipeline.jobs.resample import to_network_size
from pipeline.runtime import load_engine

SIZE = 32


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_embed_then_extract(tmp_path, tiny_checkpoint, photo_factory) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photo_factory(48, 48, seed=3)))
    src, stego, rev = tmp_path / "src", tmp_path / "stego", tmp_path / "rev"
    photo_shard(src / "s.tar", 3, h=50, w=70)
    common = ["--checkpoint", tiny_checkpoint, "--size", SIZE, "--backend", "torch"]
    assert run("embed", "--shards", src, "--out", stego, "--secret", secret, *common).exit_code == 0
    res = run("extract", "--shards", stego, "--out", rev, "--reference", secret, *common)
    assert res.exit_code == 0, res.output
    assert tar_names(rev / "s.tar") == [f"img0_{i:03d}.secret.png" for i in range(3)]
    out = tar_members(rev / "s.tar")
    stegos = tar_members(stego / "s.tar")
    engine = load_engine("torch", str(tiny_checkpoint), SIZE)
    for i in range(3):
        revealed = decode_png(out[f"img0_{i:03d}.secret.png"])
        assert revealed.shape == (SIZE, SIZE, 3)
        # the job's output is exactly the engine's reveal of the stego brought to N
        stego_n = to_network_size(decode_png(stegos[f"img0_{i:03d}.png"]), SIZE)
        expected = quantize(engine.reveal(stego_n.transpose(2, 0, 1)[None] / np.float32(255))[0].transpose(1, 2, 0))
        assert np.abs(revealed.astype(int) - expected).max() <= 1
    r = rows(rev / "s.parquet")
    assert all(x["status"] == "ok" and x["role"] == "stego" and np.isfinite(x["psnr_secret"]) for x in r)
    # the embed job's verify step scored the same thing at embed time
    embed_rows = {x["key"]: x for x in rows(stego / "s.parquet")}
    for x in r:
        assert abs(x["psnr_secret"] - embed_rows[x["key"]]["psnr_secret"]) < 0.5


def test_orientation_contract(tmp_path, tiny_checkpoint, photo_factory) -> None:
    """A mirrored image goes to the model as it is (its flip head un-mirrors the secret); EXIF orientation of the
    file is applied first, so a file stored mirrored with an EXIF 'mirror' tag extracts like the upright one."""
    stego = photo_factory(40, 60, seed=8)
    flipped = np.ascontiguousarray(stego[:, ::-1])
    exif = Image.Exif()
    exif[0x0112] = 2  # "mirror horizontal": displayed upright after applying it
    buf = io.BytesIO()
    Image.fromarray(flipped).save(buf, format="PNG", exif=exif.tobytes())
    make_tar(
        tmp_path / "in" / "s.tar",
        [("up.png", png_bytes(stego)), ("flip.png", png_bytes(flipped)), ("exif.png", buf.getvalue())],
    )
    res = run(*job_args("extract", tmp_path / "in", tmp_path / "rev", tiny_checkpoint, SIZE))
    assert res.exit_code == 0, res.output
    out = {k: decode_png(v) for k, v in tar_members(tmp_path / "rev" / "s.tar").items()}
    assert (out["exif.secret.png"] == out["up.secret.png"]).all()
    engine = load_engine("torch", str(tiny_checkpoint), SIZE)
    flip_n = to_network_size(flipped, SIZE).transpose(2, 0, 1)[None] / np.float32(255)
    expected = quantize(engine.reveal(flip_n)[0].transpose(1, 2, 0))
    assert np.abs(out["flip.secret.png"].astype(int) - expected).max() <= 1
    assert {r["width"] for r in rows(tmp_path / "rev" / "s.parquet")} == {60}


def test_two_secrets_naming(tmp_path, photo_factory) -> None:
    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import save_checkpoint

    torch.manual_seed(1)
    ckpt = save_checkpoint(build_model(get_config("tiny", num_secrets=2)), tmp_path / "k2.pt")
    s1, s2 = tmp_path / "s1.png", tmp_path / "s2.png"
    s1.write_bytes(png_bytes(photo_factory(32, 32, seed=1)))
    s2.write_bytes(png_bytes(photo_factory(32, 32, seed=2)))
    photo_shard(tmp_path / "src" / "s.tar", 2)
    common = ["--checkpoint", ckpt, "--size", SIZE, "--backend", "torch"]
    res = run("embed", "--shards", tmp_path / "src", "--out", tmp_path / "st", "--secret", s1, *common)
    assert res.exit_code == 2 and "K=2" in res.output  # a usage error, refused before any engine is loaded
    res = run("embed", "--shards", tmp_path / "src", "--out", tmp_path / "st", "--secret", s1, "--secret", s2, *common)
    assert res.exit_code == 0, res.output
    embedded = rows(tmp_path / "st" / "s.parquet")[0]
    assert embedded["secret_id"].count("+") == 1
    # Each secret's own figure in its own column; the mean in psnr_secret; nothing past K.
    assert embedded["psnr_secret"] == pytest.approx((embedded["psnr_secret1"] + embedded["psnr_secret2"]) / 2)
    assert embedded["psnr_secret1"] != embedded["psnr_secret2"] and embedded["psnr_secret3"] is None
    res = run("extract", "--shards", tmp_path / "st", "--out", tmp_path / "rev", "--reference", s1, "--reference", s2,
              *common)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert tar_names(tmp_path / "rev" / "s.tar") == [
        "img0_000.secret1.png",
        "img0_000.secret2.png",
        "img0_001.secret1.png",
        "img0_001.secret2.png",
    ]
    revealed = rows(tmp_path / "rev" / "s.parquet")[0]
    assert revealed["out_key"] == "img0_000.secret1.png,img0_000.secret2.png"
    assert revealed["psnr_secret1"] is not None and revealed["psnr_secret2"] is not None
    # Each column is its own secret's: the file written as secretJ is what psnr_secretJ measured against reference J.
    members = tar_members(tmp_path / "rev" / "s.tar")
    for j, ref in ((1, s1), (2, s2)):  # the references are at the network size already (32 px)
        got, want = decode_png(members[f"img0_000.secret{j}.png"]), decode_png(ref.read_bytes())
        mse = np.mean((got.astype(float) - want.astype(float)) ** 2)
        assert revealed[f"psnr_secret{j}"] == pytest.approx(10 * np.log10(255**2 / mse), abs=0.01)


def test_extracting_with_another_model_than_the_embedding_one_warns(tmp_path, tiny_checkpoint, photo_factory) -> None:
    """The job record names the model; extract with another one says so (summary and manifest) instead of quietly
    reporting secrets it cannot read (K = 1 stegos read with k2 reported 7 of 9 marked at 10.9 dB)."""
    import json

    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import file_sha256, save_checkpoint

    torch.manual_seed(1)
    other = save_checkpoint(build_model(get_config("tiny")), tmp_path / "other.pt")
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photo_factory(48, 48, seed=3)))
    src, stego = tmp_path / "src", tmp_path / "stego"
    photo_shard(src / "s.tar", 2, h=40, w=40)
    assert run(*job_args("embed", src, stego, tiny_checkpoint, SIZE, "--secret", secret)).exit_code == 0
    made = json.loads((stego / "manifest.json").read_text())["model"]
    assert made == {"name": "tiny", "sha256": file_sha256(tiny_checkpoint)}

    res = run(*job_args("extract", stego, tmp_path / "same", tiny_checkpoint, SIZE))
    assert res.exit_code == 0 and "warning" not in res.output
    res = run(*job_args("extract", stego, tmp_path / "other", other, SIZE))
    assert res.exit_code == 0, res.output
    warning = next(line for line in res.stdout.splitlines() if line.startswith("warning: "))
    assert f"made by model tiny (sha256 {file_sha256(tiny_checkpoint)[:12]})" in warning
    assert f"not by the model extracting, other (sha256 {file_sha256(other)[:12]})" in warning
    assert "1 warning(s)" in res.stdout.splitlines()[0]
    manifest = json.loads((tmp_path / "other" / "manifest.json").read_text())
    assert manifest["warnings"] == [warning.removeprefix("warning: ")]
    assert manifest["source_model"]["sha256"] == file_sha256(tiny_checkpoint)


def test_each_stego_png_names_its_model_and_extract_reads_it(tmp_path, tiny_checkpoint, photo_factory) -> None:
    """The stego PNGs carry the model's name and sha256 (tEXt chunks); stegos moved away from their job record are
    still recognised as another model's by extract."""
    import json
    import shutil

    from pipeline.io.encode import read_png_text
    from pipeline.model import build_model, get_config
    from pipeline.model.checkpoint import file_sha256, save_checkpoint

    torch.manual_seed(1)
    other = save_checkpoint(build_model(get_config("tiny")), tmp_path / "other.pt")
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photo_factory(48, 48, seed=3)))
    src, stego = tmp_path / "src", tmp_path / "stego"
    photo_shard(src / "s.tar", 2, h=40, w=40)
    assert run(*job_args("embed", src, stego, tiny_checkpoint, SIZE, "--secret", secret)).exit_code == 0
    for data in tar_members(stego / "s.tar").values():
        want = {"sris-pipeline model": "tiny", "sris-pipeline model sha256": file_sha256(tiny_checkpoint)}
        assert read_png_text(data) == want
        assert Image.open(io.BytesIO(data)).text == want  # any PNG reader sees them
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(stego / "s.tar", moved / "s.tar")  # the shard alone: no job record beside it
    res = run(*job_args("extract", moved, tmp_path / "other", other, SIZE))
    assert res.exit_code == 0, res.output
    warning = next(line for line in res.stdout.splitlines() if line.startswith("warning: "))
    assert warning.startswith("warning: 2 of the 2 stegos whose PNG metadata names their model were made by model ")
    assert json.loads((tmp_path / "other" / "manifest.json").read_text())["warnings"] == [warning[9:]]
    res = run(*job_args("extract", moved, tmp_path / "same", tiny_checkpoint, SIZE))
    assert res.exit_code == 0 and "warning" not in res.output
