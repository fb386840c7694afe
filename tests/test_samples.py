"""The samples shipped in pipeline/samples/ are what tests/make_samples.py makes: the same members in the same order,
the secret and the PNG pixel for pixel, the JPEGs to within a grey level (an encoder update may move a few)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from make_samples import make_samples
from PIL import Image

pytest.importorskip("skimage")

SAMPLES = Path(__file__).resolve().parents[1] / "pipeline" / "samples"


def _members(path: Path) -> list[tuple[str, np.ndarray]]:
    with tarfile.open(path) as tf:
        return [(m.name, np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())))) for m in tf.getmembers()]


def test_the_shipped_samples_are_what_the_maker_makes(tmp_path: Path) -> None:
    made = make_samples(tmp_path)
    assert all((SAMPLES / p.relative_to(tmp_path)).is_file() for p in made)
    for shard in ("shard-000000.tar", "shard-000001.tar"):
        got, shipped = _members(tmp_path / "shards" / shard), _members(SAMPLES / "shards" / shard)
        assert [n for n, _ in got] == [n for n, _ in shipped]
        for (name, a), (_, b) in zip(got, shipped, strict=True):
            assert a.shape == b.shape, name
            diff = np.abs(a.astype(int) - b.astype(int))
            if name.endswith(".png"):
                assert diff.max() == 0, name
            else:
                assert diff.mean() <= 1.0, name
    secret = np.asarray(Image.open(tmp_path / "secret.png"))
    assert np.array_equal(secret, np.asarray(Image.open(SAMPLES / "secret.png")))
