"""Mirror handling (pipeline/model/codes/mirror.py): the pattern, its detection on real photos, the pilot's decision,
and the model's use."""

from __future__ import annotations

import io
import tarfile
from importlib import resources

import numpy as np
import pytest
import torch
from conftest import flat_config
from PIL import Image

from pipeline.core import distortions as D
from pipeline.model import build_model, get_config
from pipeline.model.codes.mirror import add_template, is_mirrored, mirror_score, template, unmirror
from pipeline.model.migrate import config_from_dict


def sample_photos(size: int = 256) -> torch.Tensor:
    """The photos of the shipped sample shards, centre-cropped and resized to (B, 3, size, size) in [0, 1]."""
    imgs = []
    for shard in sorted((resources.files("pipeline") / "samples" / "shards").iterdir()):
        with tarfile.open(fileobj=io.BytesIO(shard.read_bytes())) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                    img = Image.open(tar.extractfile(m)).convert("RGB")
                    s = min(img.size)
                    left, top = (img.width - s) // 2, (img.height - s) // 2
                    img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
                    imgs.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(imgs).float() / 255


def test_template_is_a_fixed_block_pattern_tiled_across_sizes() -> None:
    like = torch.zeros(1)
    t256, t128 = template(256, 256, like), template(128, 96, like)
    assert set(t256.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(t128, t256[..., :128, :96])  # a crop sees the pattern at the same pixel positions
    assert torch.equal(t256[..., :2, :2], t256[..., :1, :1].expand(1, 1, 2, 2))  # constant on 2x2 blocks
    assert abs(t256.mean().item()) < 0.05
    # Nearly orthogonal to its own mirror: that is what the detector relies on.
    assert abs((t256 * t256.flip(-1)).mean().item()) < 0.05
    assert torch.equal(template(300, 520, like)[..., :256, :256], t256)  # larger sizes tile the same tile


ATTACKS = {
    "none": lambda x: x,
    "mean 3x3": D.mean_filter,
    "gaussian s1": lambda x: D.gaussian_filter(x, 1.0),
    "gaussian s2": lambda x: D.gaussian_filter(x, 2.0),
    "sharpen": D.sharpen,
    "noise s10": lambda x: D.gaussian_noise(x, 10.0, torch.Generator().manual_seed(0)),
    "jpeg 75": lambda x: D.jpeg(x, 75),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_detection_on_photos_survives_the_distortions(attack: str) -> None:
    """One grey level of pattern, 8-bit rounding, then the distortion: the sign is right on every photo, mirrored
    or not, and above the score of every photo that holds no pattern at all."""
    photos = sample_photos()
    stego = D.quantize(add_template(photos, 1.0))
    f = ATTACKS[attack]
    plain = mirror_score(D.quantize(f(stego)))
    mirrored = mirror_score(D.quantize(f(stego.flip(-1))))
    unmarked = mirror_score(D.quantize(f(photos))).abs()
    assert (plain > 0).all() and (mirrored < 0).all()
    assert plain.min() > unmarked.max() and (-mirrored).min() > unmarked.max()


def test_unmirror_flips_only_the_mirrored_images() -> None:
    stego = D.quantize(add_template(sample_photos(), 1.0))
    mixed = torch.cat([stego[:2], stego[2:].flip(-1)])
    assert is_mirrored(mixed).tolist() == [False, False] + [True] * (len(stego) - 2)
    assert torch.equal(unmirror(mixed), stego)


@pytest.mark.parametrize("arch", ["sris", "hinet", "unet"])
def test_model_reveals_a_mirrored_stego_as_the_original(arch: str) -> None:
    """With the mirror pattern (the presets' default) the model itself un-mirrors: same secrets for the stego and its
    mirror."""
    torch.manual_seed(0)
    model = build_model(get_config("tiny", arch=arch)).eval()
    assert model.config.codes.mirror.decision == "pattern" and not model.config.legacy.flip_head
    covers = sample_photos(64)[:2]
    with torch.inference_mode():
        stego = D.quantize(model.embed(covers, covers.flip(0)))
        assert torch.equal(model.reveal(stego.flip(-1)), model.reveal(stego))
        # The pattern is part of the stego: one grey level on average.
        no_sync = build_model(get_config("tiny", arch=arch, mirror="none")).eval()
        no_sync.load_state_dict(model.state_dict())
        diff = model.embed_raw(covers, covers.flip(0)) - no_sync.embed_raw(covers, covers.flip(0))
        assert diff.abs().mean().item() == pytest.approx(1 / 255, rel=1e-3)


def _pilot_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(get_config("fast", light_score=True, residual_gain=0.06, base_tile=True, mirror="pilot")).eval()


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_base_pilot_tells_a_mirror_after_the_distortions(attack: str) -> None:
    """``mirror="pilot"``: the thumbnail code's base pilot decides, right on every photo, mirrored or not; the stego
    holds no mirror pattern (its score is that of an unmarked photo, far under a marked one's)."""
    model, photos = _pilot_model(), sample_photos()
    f = ATTACKS[attack]
    with torch.inference_mode():
        stego = D.quantize(model.embed(photos, photos.roll(1, 0)))
        reader = model.thumbnail.reader
        assert not reader.mirrored(D.quantize(f(stego))).any()
        assert reader.mirrored(D.quantize(f(stego.flip(-1)))).all()
    marked = mirror_score(D.quantize(add_template(photos, 1.0)))
    assert mirror_score(stego).abs().max() < marked.min() / 2


def test_a_pilot_mirrored_model_reveals_a_mirror_as_the_original_and_adds_no_pattern() -> None:

    model, covers = _pilot_model(), sample_photos(64)[:2]
    synced = build_model(model.config.with_overrides(mirror="pattern")).eval()
    synced.load_state_dict(model.state_dict())
    with torch.inference_mode():
        stego = D.quantize(model.embed(covers, covers.flip(0)))
        assert torch.equal(model.reveal(stego.flip(-1)), model.reveal(stego))
        # Without the residual code's own reading in between, the two embeds differ by the pattern alone.
        plain, plain_synced = (build_model(m.config.with_overrides(residual_gain=0.0)).eval() for m in (model, synced))
        plain.load_state_dict(model.state_dict())
        plain_synced.load_state_dict(model.state_dict())
        diff = plain_synced.embed_raw(covers, covers.flip(0)) - plain.embed_raw(covers, covers.flip(0))
        assert torch.allclose(diff, template(64, 64, diff) / 255, atol=1e-6)
    with pytest.raises(ValueError, match="mirror='pilot'"):
        get_config("fast", mirror="pilot", thumbnail_code=False)


def test_checkpoints_from_before_the_pattern_keep_their_learned_flip_head() -> None:
    old = {k: v for k, v in flat_config("tiny").items() if k != "mirror"}
    old["carrier"] = old.pop("thumbnail_code")  # a version-1 dict without flip_sync: the first checkpoints
    cfg = config_from_dict(old)
    assert cfg.legacy.flip_head and cfg.codes.mirror.decision == "none"
