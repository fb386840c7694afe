"""Registration before reveal (``pipeline/model/codes/register.py``): the thumbnail code's pilot finds a shift and a
mirror, the stego is moved back into register, an unshifted stego is read exactly as before, and the same search
scores how strongly an image carries the mark."""

from __future__ import annotations

import pytest
import torch
from test_mirror import sample_photos

from pipeline.core import distortions as D
from pipeline.core.distortions import shift
from pipeline.core.metrics import psnr, to_255
from pipeline.model import build_model, get_config
from pipeline.model.codes.register import Registration, realign


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The untrained ``fast`` model (its thumbnail code is the analytic one) without and with registration."""
    torch.manual_seed(0)
    cfg = get_config("fast", light_score=True, residual_gain=0.06, base_tile=True, mirror="pilot")
    plain = build_model(cfg).eval()
    registered = build_model(cfg.with_overrides(register=True)).eval()
    registered.load_state_dict(plain.state_dict())
    return plain, registered


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    photos = sample_photos(256)
    return photos, photos.roll(1, 0)


def test_realign_undoes_a_shift() -> None:
    x = torch.rand(2, 3, 40, 48)
    for dy, dx in ((3, 5), (0, 7), (-2, 4), (6, -3)):
        moved = realign(x, -dy, -dx)  # content up/left by (dy, dx)
        back = realign(moved, dy, dx)
        ys, xs = slice(max(dy, 0), 40 + min(dy, 0)), slice(max(dx, 0), 48 + min(dx, 0))
        assert torch.equal(back[..., ys, xs], x[..., ys, xs])


@pytest.mark.parametrize("k", [1, 4, 7, 11])
def test_the_pilot_finds_a_shift_and_a_mirror(models, pairs, k: int) -> None:
    _, model = models
    covers, secrets = pairs
    reg = Registration(model.thumbnail.reader)
    with torch.inference_mode():
        stego = D.quantize(model.embed(covers, secrets))
        found = reg.search(D.quantize(shift(stego, k)))
        assert found.dy.tolist() == found.dx.tolist() == [k] * len(covers) and not found.mirrored.any()
        found = reg.search(D.quantize(shift(stego.flip(-1), k)))
        # Un-mirrored, content cropped at the left moves right: the translation to undo is (k, -k).
        assert found.dy.tolist() == [k] * len(covers) and found.dx.tolist() == [-k] * len(covers)
        assert found.mirrored.all()


def test_registration_brings_a_shifted_secret_back_and_leaves_a_clean_one_alone(models, pairs) -> None:
    plain, model = models
    covers, secrets = pairs
    with torch.inference_mode():
        stego = D.quantize(model.embed(covers, secrets))
        assert torch.equal(model.reveal(stego), plain.reveal(stego))
        assert torch.equal(model.reveal(D.mean_filter(stego)), plain.reveal(D.mean_filter(stego)))
        shifted = D.quantize(shift(stego, 5))
        ref = to_255(secrets[..., 5:, 5:])
        without = psnr(to_255(plain.reveal(shifted)[..., 5:, 5:]), ref).mean()
        with_ = psnr(to_255(model.reveal(shifted)[..., 5:, 5:]), ref).mean()
    assert with_ > without + 5, (with_, without)


def test_detect_tells_marked_from_unmarked(models, pairs) -> None:
    _, model = models
    covers, secrets = pairs
    with torch.inference_mode():
        stego = D.quantize(model.embed(covers, secrets))
        marked = model.detect(stego)
        unmarked = model.detect(covers)
        shifted = model.detect(D.quantize(shift(stego, 3)))
    assert marked.min() > 2 * unmarked.max(), (marked, unmarked)
    assert shifted.min() > 2 * unmarked.max()


def test_registration_and_detection_need_the_thumbnail_code() -> None:
    with pytest.raises(ValueError, match="thumbnail code"):
        get_config("tiny", thumbnail_code=False, register=True)
    model = build_model(get_config("tiny", arch="unet")).eval()
    with pytest.raises(ValueError, match="thumbnail code"):
        model.detect(torch.rand(1, 3, 32, 32))


def test_validate_register_measures_the_same_weights_with_registration(tmp_path, tiny_checkpoint) -> None:
    """``validate --register``: the checkpoint's weights with registration on; a clean stego reads as without it."""
    import json

    from click.testing import CliRunner
    from conftest import synthetic_photo
    from PIL import Image

    from pipeline.cli import main
    from pipeline.model.checkpoint import load_model, with_registration

    for i in range(3):
        Image.fromarray(synthetic_photo(80, 90, seed=20 + i)).save(tmp_path / f"p{i}.png")
    args = ["validate", "--data", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--size", "64", "--all-photos"]
    plain = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    registered = json.loads(CliRunner().invoke(main, [*args, "--json", "--register"]).output)
    assert registered["psnr_secret"] == plain["psnr_secret"] and registered["psnr_cover"] == plain["psnr_cover"]
    model = load_model(tiny_checkpoint)
    assert not model.config.codes.register.enabled and with_registration(model).config.codes.register.enabled
    with pytest.raises(ValueError, match="thumbnail code"):
        with_registration(build_model(get_config("tiny", arch="unet")))


def test_an_aligned_reveal_skips_the_search_and_reads_a_fresh_stego_the_same(models, pairs) -> None:
    _, model = models
    covers, secrets = pairs
    with torch.inference_mode():
        stego = D.quantize(model.embed(covers, secrets))
        assert torch.equal(model.reveal(stego, aligned=True), model.reveal(stego))
        moved = shift(stego, 5)
        searched, skipped = model.reveal(moved), model.reveal(moved, aligned=True)
    # told the stego is aligned, reveal reads the shifted one where it lies, and loses the secret
    assert (psnr(to_255(searched), to_255(secrets)) > psnr(to_255(skipped), to_255(secrets)) + 3).all()


def test_the_search_finds_the_same_as_one_hypothesis_at_a_time(models, pairs) -> None:
    """The batched statistics equal the definition: each hypothesis's pilot signs against its phase's blocks."""
    from pipeline.model.codes.register import HYPOTHESES, _sign_bank
    from pipeline.model.codes.thumbnail import pilot

    _, model = models
    reg = Registration(model.thumbnail.reader)
    x = torch.rand(2, 3, 72, 88)
    z = reg.statistics(x)
    y = torch.nn.functional.conv2d(x, reg.reader.base_kernel()).sum(dim=1)  # every block, at every pixel offset
    for i in (0, 100, 480, 700, len(HYPOTHESES) - 1):
        _, _, py, px, oy, ox = HYPOTHESES[i]
        blocks = y[:, py::8, px::8]
        h, w = blocks.shape[-2:]
        table = pilot(h + 20, w + 20, blocks)[0, 0]  # the pilot sign of original block (a, b), a, b >= 0
        signs = torch.zeros(h, w)
        for a in range(h):
            for b in range(w):
                if a + oy >= 0 and b + ox >= 0:  # blocks before the original's first carry no sign
                    signs[a, b] = table[a + oy, b + ox]
        want = (blocks * signs).sum(dim=(1, 2)) / blocks.square().sum(dim=(1, 2)).sqrt()
        assert torch.allclose(z[:, i], want, atol=1e-4), (i, z[:, i], want)
    assert _sign_bank(9, 11)[0].shape[:2] == (64, 99)
