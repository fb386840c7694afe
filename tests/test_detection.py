"""Detection: the quick unmoved statistics, the threshold in the checkpoint, and the extract job's mark columns.

The job path of published images (embed at full size, a JPEG re-save or a downscale and JPEG, extract) runs on real
photos from scikit-image's bundled data, tiled into full-size frames at their native resolution.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from jobkit import make_tar, png_bytes, rows, tar_members
from PIL import Image

from pipeline.cli import main
from pipeline.core.distortions import quantize
from pipeline.core.photos import center_square
from pipeline.model import load_model
from pipeline.model.checkpoint import default_checkpoint_path, read_checkpoint, update_meta
from pipeline.model.codes.mirror import mirror_image
from pipeline.model.codes.register import IDENTITY, Registration
from pipeline.runtime import load_engine

SIZE = 256


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shipped():
    """The analog model: the pilot's detector and its calibrated threshold (the default reads its digital layer's
    CRC instead)."""
    return load_model("k1-analog").eval()


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return [data.astronaut(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0], data.chelsea()]


def as_tensor(img: np.ndarray, size: int = SIZE) -> torch.Tensor:
    return center_square(torch.from_numpy(img).permute(2, 0, 1).contiguous(), size)


def test_unmoved_statistics_are_the_search_at_no_translation(shipped, photos) -> None:
    covers = torch.stack([as_tensor(p) for p in photos[:4]])
    with torch.inference_mode():
        stegos = quantize(shipped.embed(covers, covers.roll(1, 0)))
        reg = Registration(shipped.thumbnail.reader)
        for x in (stegos, mirror_image(stegos), covers):
            quick = reg.unmoved_statistics(x)
            assert torch.allclose(quick[:, 0], reg.statistics(x)[:, IDENTITY], atol=1e-4)
            assert torch.allclose(quick[:, 1], reg.statistics(mirror_image(x))[:, IDENTITY], atol=1e-4)


def test_a_threshold_skips_the_search_without_changing_a_verdict(shipped, photos) -> None:
    covers = torch.stack([as_tensor(p) for p in photos[:4]])
    with torch.inference_mode():
        stegos = quantize(shipped.embed(covers, covers.roll(1, 0)))
        shifted = torch.nn.functional.pad(stegos[..., 3:, 5:], (0, 5, 0, 3), mode="reflect")
        images = torch.cat([stegos, mirror_image(stegos), shifted, covers])
        full = shipped.detect(images)
        for t in (3.0, 5.5, 9.0):
            assert torch.equal(shipped.detect(images, t) >= t, full >= t)
    assert (full[:12] >= 5.5).all() and (full[12:] < 5.5).all()


def _published_like(shipped, photos) -> torch.Tensor:
    """Marked stegos as they are, mirrored, shifted by (3, 5) and (3, 3) px, and the unmarked covers: 20 images.
    (A (3, 3) shift can keep the unmoved statistic over the threshold while the moved hypothesis is stronger.)"""
    covers = torch.stack([as_tensor(p) for p in photos[:4]])
    with torch.inference_mode():
        stegos = quantize(shipped.embed(covers, covers.roll(1, 0)))
    shifted = [
        torch.nn.functional.pad(stegos[..., dy:, dx:], (0, dx, 0, dy), mode="replicate") for dy, dx in ((3, 5), (3, 3))
    ]
    return torch.cat([stegos, mirror_image(stegos), *shifted, covers])


def test_reveal_and_detect_is_reveal_and_detect_with_one_search(shipped, photos, monkeypatch) -> None:
    """The extract job's call: the same secrets and scores as ``reveal`` then ``detect``, with one registration
    search over the batch (reveal's; detect's would be a second one for the images the quick statistic leaves)."""
    images = _published_like(shipped, photos)
    t = shipped.detect_threshold
    with torch.inference_mode():
        secrets, scores, quick = shipped.reveal(images), shipped.detect(images), shipped.detect(images, t)
        searched = []
        real_search = Registration.search
        monkeypatch.setattr(Registration, "search", lambda self, x: searched.append(len(x)) or real_search(self, x))
        both, both_scores = shipped.reveal_and_detect(images)
    assert searched == [len(images)]
    assert torch.allclose(both, secrets, atol=1e-5)
    assert torch.allclose(both_scores, scores, atol=1e-5)  # the search's maximum ...
    assert torch.equal(both_scores >= t, quick >= t)  # ... and the verdicts of the quick path
    engine = load_engine("torch", "k1-analog", SIZE)
    revealed, engine_scores = engine.reveal_and_detect(images.numpy())
    assert np.allclose(revealed, secrets.numpy(), atol=1e-5) and np.allclose(engine_scores, scores.numpy(), atol=1e-5)


def test_the_threshold_is_read_from_the_checkpoint(tmp_path, tiny_checkpoint) -> None:
    assert load_model().detect_threshold == read_checkpoint(default_checkpoint_path())["meta"]["detection"]["threshold"]
    path = shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt")
    assert load_model(path).detect_threshold is None
    update_meta(path, detection={"threshold": 4.25})
    assert load_model(path).detect_threshold == 4.25
    assert read_checkpoint(path)["meta"]["note"] == "untrained test model"  # the rest of the meta is kept
    engine = load_engine("torch", str(path), 64)
    assert engine.detect_threshold == 4.25
    assert engine.detect(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)).shape == (2,)


def test_extract_writes_mark_score_and_marked_and_counts_them(tmp_path, photos) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photos[4]))
    make_tar(tmp_path / "src" / "s.tar", [(f"p{i}.png", png_bytes(p)) for i, p in enumerate(photos[:3])])
    res = run("embed", "--shards", tmp_path / "src", "--out", tmp_path / "st", "--secret", secret, "--backend", "torch")
    assert res.exit_code == 0, res.output
    stegos = tar_members(tmp_path / "st" / "s.tar")
    members = [(f"marked{i}.png", stegos[f"p{i}.png"]) for i in range(3)]
    members += [(f"plain{i}.png", png_bytes(p)) for i, p in enumerate(photos[:4])]  # the covers themselves
    make_tar(tmp_path / "mixed" / "s.tar", members)
    res = run("extract", "--shards", tmp_path / "mixed", "--out", tmp_path / "rev", "--backend", "torch")
    assert res.exit_code == 0, res.output
    assert "3 marked, 4 unmarked" in res.output
    by_key = {r["key"]: r for r in rows(tmp_path / "rev" / "s.parquet")}
    threshold = load_model().detect_threshold
    for key, r in by_key.items():
        assert r["marked"] == key.startswith("marked")
        assert r["marked"] == (r["mark_score"] >= threshold)


def mosaic(tiles: list[np.ndarray], first: int, h: int = 1000, w: int = 1600) -> np.ndarray:
    """A full-size frame (h, w, 3) tiled row by row with the photos at their native resolution."""
    out = np.zeros((h, w, 3), np.uint8)
    y = x = row_h = 0
    for j in range(64):
        t = tiles[(first + j) % len(tiles)]
        th, tw = t.shape[:2]
        if x + tw > w:
            x, y, row_h = 0, y + row_h, 0
        if y >= h:
            break
        hh, ww = min(th, h - y), min(tw, w - x)
        out[y : y + hh, x : x + ww] = t[:hh, :ww]
        x, row_h = x + tw, max(row_h, th)
    return out


def jpeg_bytes(img: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def published_job(tmp_path_factory, photos) -> dict[str, list[dict]]:
    """Embed the shipped model's mark into three full-size frames, publish them two ways, extract: rows per way."""
    root = tmp_path_factory.mktemp("published")
    (root / "secret.png").write_bytes(png_bytes(photos[4]))
    frames = [mosaic(photos[:4], i) for i in range(3)]
    make_tar(root / "src" / "s.tar", [(f"f{i}.png", png_bytes(f)) for i, f in enumerate(frames)])
    res = run(
        "embed", "--shards", root / "src", "--out", root / "st", "--secret", root / "secret.png", "--backend", "torch"
    )
    assert res.exit_code == 0, res.output
    stegos = {
        k: np.asarray(Image.open(io.BytesIO(v)).convert("RGB")) for k, v in tar_members(root / "st" / "s.tar").items()
    }
    out = {}
    for way, publish in (("jpeg90", lambda a: a), ("half_jpeg90", half)):
        make_tar(root / way / "s.tar", [(k.replace(".png", ".jpg"), jpeg_bytes(publish(a))) for k, a in stegos.items()])
        res = run(
            "extract",
            "--shards",
            root / way,
            "--out",
            root / f"{way}-rev",
            "--reference",
            root / "secret.png",
            "--backend",
            "torch",
        )
        assert res.exit_code == 0, res.output
        out[way] = rows(root / f"{way}-rev" / "s.parquet")
    return out


@pytest.mark.parametrize("way", ["jpeg90", "half_jpeg90"])
def test_published_stegos_are_found_marked(published_job, way) -> None:
    assert all(r["marked"] for r in published_job[way])


def test_the_secret_survives_a_jpeg90_resave(published_job) -> None:
    assert np.mean([r["psnr_secret"] for r in published_job["jpeg90"]]) >= 22.0


def test_the_secret_survives_a_half_downscale_and_jpeg90(published_job) -> None:
    assert np.mean([r["psnr_secret"] for r in published_job["half_jpeg90"]]) >= 22.0
