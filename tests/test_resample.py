"""The maps between full-size images and the network size (pipeline/jobs/resample.py): the area average is
OpenCV's, the exact upsampling is its pseudo-inverse, and each side falls back to bilinear where the area average
does not apply."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.jobs.batch import JobSettings
from pipeline.jobs.resample import area_taps, compose, exact_upsample, resize_bilinear, to_network_size

SHAPES = [(45, 70, 32), (257, 300, 256), (1000, 777, 256), (64, 64, 32)]


def dense_area(n_in: int, n_out: int) -> np.ndarray:
    """The area average n_in -> n_out as a dense (n_out, n_in) matrix, from its taps."""
    i0, i1, a, b = area_taps(n_in, n_out)
    d = np.zeros((n_out, n_in))
    np.add.at(d, (i0, np.arange(n_in)), a)
    np.add.at(d, (i1, np.arange(n_in)), b)
    return d


@pytest.mark.parametrize(("h", "w", "n"), SHAPES)
def test_area_taps_are_opencvs_area_average(h: int, w: int, n: int) -> None:
    img = np.random.default_rng(h * w).random((h, w, 3)).astype(np.float32) * 255
    dy, dx = dense_area(h, n), dense_area(w, n)
    assert np.allclose(dy.sum(1), 1) and np.allclose(dx.sum(1), 1)  # every output pixel a mean
    ours = np.stack([dy @ img[..., c] @ dx.T for c in range(3)], -1)
    assert np.abs(ours - cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)).max() < 1e-3


@pytest.mark.parametrize(("n_full", "n"), [(70, 32), (300, 256), (1000, 256), (64, 32)])
def test_exact_upsample_is_the_pseudo_inverse(n_full: int, n: int) -> None:
    prefilter, i0, i1, t = exact_upsample(n, n_full)
    u = np.zeros((n_full, n))
    np.add.at(u, (np.arange(n_full), i0), 1 - t)
    np.add.at(u, (np.arange(n_full), i1), t)
    u = u @ prefilter
    d = dense_area(n_full, n)
    assert np.abs(d @ u - np.eye(n)).max() < 1e-4  # the receiver's area average undoes it
    assert np.abs(u - np.linalg.pinv(d)).max() < 1e-4  # and it is the smallest such residual


def test_to_network_size_area_or_bilinear_and_mirror_symmetric() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 131, 3), dtype=np.uint8)
    assert np.array_equal(to_network_size(img, 32), cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA))
    flipped = to_network_size(np.ascontiguousarray(img[:, ::-1]), 32).astype(int)
    assert np.abs(flipped - to_network_size(img, 32)[:, ::-1]).max() <= 1  # a mirrored stego reads mirrored
    narrow = rng.integers(0, 256, (20, 131, 3), dtype=np.uint8)  # a side below N: antialiased bilinear
    assert np.array_equal(to_network_size(narrow, 32), resize_bilinear(narrow, 32))
    assert to_network_size(img[:32, :32], 32) is not None and resize_bilinear(img, 32).shape == (32, 32, 3)


def test_exact_falls_back_to_smooth_below_the_network_size() -> None:
    rng = np.random.default_rng(1)
    cover = rng.integers(20, 236, (20, 50, 3), dtype=np.uint8)
    cover_n = to_network_size(cover, 32)
    stego_n = np.clip(cover_n.transpose(2, 0, 1) / 255 + rng.normal(0, 0.02, (3, 32, 32)), 0, 1).astype(np.float32)
    exact, exact_sse = compose(cover, cover_n, stego_n, "exact")
    smooth, smooth_sse = compose(cover, cover_n, stego_n, "smooth")
    assert np.array_equal(exact, smooth) and exact_sse == smooth_sse > 0


def test_bad_upsample_is_refused() -> None:
    z = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="upsample"):
        compose(z, z[:32, :32], np.zeros((3, 32, 32), np.float32), "nearest")
    with pytest.raises(ValueError, match="upsample"):
        JobSettings(upsample="nearest")


def test_the_unrounded_area_average_of_a_large_image_is_made_in_stripes(monkeypatch) -> None:
    """Striped (bounded memory for 50 MP photos) and whole, the unrounded area average is the same, and it rounds
    to OpenCV's 8-bit area average."""
    import cv2

    from pipeline.jobs import resample

    img = np.random.default_rng(3).integers(0, 256, (1301, 977, 3), dtype=np.uint8)
    whole = resample.to_network_size_float(img, 64)
    monkeypatch.setattr(resample, "AREA_STRIPE_PIXELS", 10_000)
    monkeypatch.setattr(resample, "COMPOSE_STRIPE_ROWS", 100)
    striped = resample.to_network_size_float(img, 64)
    assert np.abs(striped - whole).max() < 1e-3
    eight_bit = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(np.rint(striped) - eight_bit).max() <= 1
