"""Steganalysis: the P_E measure, pair-aware splits, the feature sets, and sanity of all three detectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.evaluate import steganalysis as S


def test_min_pe_on_known_cases() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert S.min_pe(np.array([0, 1, 2, 3, 4, 5, 6, 7]), labels)[0] == 0.0
    assert S.min_pe(np.zeros(8), labels)[0] == 0.5  # no information: every threshold gives 0.5
    assert S.min_pe(np.array([7, 6, 5, 4, 3, 2, 1, 0]), labels)[0] == 0.5  # inverted detector is not rewarded
    pe, p_fa, p_md, _ = S.min_pe(np.array([0, 1, 2, 5, 3, 4, 6, 7]), labels)  # one cover above one stego
    assert pe == pytest.approx(0.125) and p_fa + p_md == pytest.approx(0.25)
    assert S.min_pe(np.array([0.0, 1.0]), np.array([0, 1]))[3] == 1.0
    with pytest.raises(ValueError, match="both"):
        S.min_pe(np.zeros(3), np.zeros(3))


def test_pair_splits_are_disjoint_halves() -> None:
    splits = S.pair_splits(11, 6, seed=1)
    assert len(splits) == 6
    for train, test in splits:
        assert len(train) == 5 and len(test) == 6
        assert not set(train) & set(test) and set(train) | set(test) == set(range(11))
    assert len({tuple(tr) for tr, _ in splits}) > 1  # splits differ
    with pytest.raises(ValueError, match="at least 4"):
        S.pair_splits(3, 5)


def test_tiles_keep_their_photo() -> None:
    imgs = np.arange(2 * 3 * 8 * 8, dtype=np.uint8).reshape(2, 3, 8, 8)
    t, photo = S.tiles(imgs, 4)
    assert t.shape == (8, 3, 4, 4) and photo.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(t[1], imgs[0, :, :4, 4:]) and np.array_equal(t[6], imgs[1, :, 4:, :4])
    whole, photo = S.tiles(imgs, None)
    assert whole is imgs and photo.tolist() == [0, 1]


def test_srm_features_shape_and_symmetries(photo_factory) -> None:
    """Histograms sum to 1 per submodel; the merged sign/direction symmetries make the features invariant to
    inverting the image (residuals change sign, min and max swap) and to transposing it (H and V swap)."""
    assert (S._N_SPAM, S._N_MINMAX) == (169, 325)  # the SRM's symmetrised sizes for T = 2
    imgs = np.stack([photo_factory(40, 48, seed=i) for i in range(3)]).transpose(0, 3, 1, 2).copy()
    f = S.srm_features(imgs)
    assert f.shape == (3, 1339) and len(S.srm_feature_names()) == 1339
    sums = [f[:, i * 169 : (i + 1) * 169].sum(1) for i in range(6)] + [f[:, 1014:].sum(1)]
    assert np.allclose(sums, 1.0)
    assert np.allclose(S.srm_features(255 - imgs), f)
    assert np.allclose(S.srm_features(imgs.transpose(0, 1, 3, 2).copy()), f)
    assert not np.allclose(S.srm_features(np.roll(imgs, 1, axis=0)), f)  # and they do tell images apart


def test_wavelet_features_are_finite(photo_factory) -> None:
    imgs = np.stack([photo_factory(64, 64, seed=i) for i in range(2)]).transpose(0, 3, 1, 2).copy()
    f = S.wavelet_features(imgs)
    assert f.shape == (2, 216) and np.isfinite(f).all()
    flat = np.full((1, 1, 32, 32), 9, np.uint8)  # no texture at all: still finite
    assert np.isfinite(S.wavelet_features(flat)).all()


def test_xunet_shapes() -> None:
    net = S.XuNet(channels=3)
    assert net(torch.rand(2, 3, 64, 64) * 255).shape == (2, 2)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) < 20_000  # the paper's small network


def _detectors() -> list[S.Detector]:
    return S.default_detectors(xunet_epochs=4)


def test_pe_is_one_half_when_stego_equals_cover(photo_factory) -> None:
    covers = np.stack([photo_factory(64, 64, seed=i) for i in range(8)]).transpose(0, 3, 1, 2).copy()
    rows = S.run_steganalysis(covers, covers.copy(), _detectors(), n_splits=5, progress=False)
    summary = S.summarise_pe(rows)
    assert set(summary) == {"srm-fld", "xunet", "wavelet-fld"}
    for det, s in summary.items():
        assert s["splits"] == 5
        assert s["pe"] == pytest.approx(0.5, abs=0.02), det


def test_pe_is_near_zero_for_lsb_noise_on_flat_images() -> None:
    """+/-1 on every pixel of flat images: trivially detectable, every detector must find it."""
    rng = np.random.default_rng(0)
    covers = np.repeat(np.repeat(rng.integers(20, 235, (10, 3, 1, 1)), 64, 2), 64, 3).astype(np.uint8)
    stegos = (covers.astype(int) + rng.choice([-1, 1], covers.shape)).astype(np.uint8)
    rows = S.run_steganalysis(covers, stegos, _detectors(), n_splits=5, tile=32, progress=False)
    for det, s in S.summarise_pe(rows).items():
        assert s["pe"] <= 0.05, det
    # every test sample of every split is scored, each photo's tiles together on one side
    assert len(rows) == 3 * 5 * 2 * 5 * 4
    by_split = {}
    for r in rows:
        by_split.setdefault((r["detector"], r["split"]), set()).add(r["photo"])
    assert all(len(p) == 5 for p in by_split.values())


def test_chance_floor_is_below_one_half_for_small_test_sets() -> None:
    small, large = S.chance_pe(8, 8, draws=300), S.chance_pe(400, 400, draws=100)
    assert small < large < 0.5
    assert small > 0.25


def test_bad_inputs_are_refused() -> None:
    a = np.zeros((4, 3, 16, 16), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        S.run_steganalysis(a, a[:, :1], _detectors())
    with pytest.raises(ValueError, match="at least 4"):
        S.run_steganalysis(a[:3], a[:3], _detectors(), progress=False)
