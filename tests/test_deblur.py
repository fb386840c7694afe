"""The blind deblur before reveal (``pipeline/model/codes/deblur.py``): the Wiener filter undoes the family's blurs,
the thumbnail code's pilot tells how strong a blur was, clean and noisy stegos pass untouched, and a model that
deblurs gives more of the secret back after a blur than the same weights without it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import flat_config
from PIL import Image

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr
from pipeline.model import build_model, get_config
from pipeline.model.codes import deblur
from pipeline.model.codes.register import Registration


def _photos(photo_factory, n: int, size: int = 128, seed: int = 0) -> torch.Tensor:
    imgs = [photo_factory(size, size, seed=seed + i) for i in range(n)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Real JPEG (Pillow) of each image of ``x`` (B, 3, H, W) in [0, 1]."""
    out = []
    for img in (x.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        out.append(np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def _pair(deblurring: bool = True) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same untrained ``fast`` weights (its thumbnail code is the analytic one) without and with the deblur."""
    torch.manual_seed(0)
    plain = build_model(get_config("fast", light_score=True, residual_gain=0.06)).eval()
    model = build_model(get_config("fast", light_score=True, residual_gain=0.06, deblur=deblurring)).eval()
    model.load_state_dict(plain.state_dict())
    return plain, model


@pytest.mark.parametrize("a", [0.1, 0.274, 1 / 3])
def test_the_wiener_filter_undoes_a_blur_of_the_family(a: float, photo_factory) -> None:
    x = _photos(photo_factory, 2)
    blurred = D.filter_image(x, deblur.blur_kernel(a))
    restored = deblur.wiener(blurred, torch.full((2,), a))
    before = psnr(blurred * 255, x * 255).mean().item()
    after = psnr(restored * 255, x * 255).mean().item()
    assert after > before + 3, (before, after)


def test_no_blur_means_no_change(photo_factory) -> None:
    x = _photos(photo_factory, 2)
    out = deblur.wiener(x, torch.tensor([0.0, 0.2]))
    assert torch.equal(out[0], x[0]) and not torch.equal(out[1], x[1])


def test_the_estimate_inverts_the_calibration() -> None:
    cal = deblur.Calibration(a=(0.0, 0.1, 0.2, 0.3), rho4=(1.0, 0.6, 0.3, 0.1), rho8=(1.0, 0.8, 0.6, 0.4), clean=(1, 1))
    rho4 = torch.tensor([1.2, 0.95, 0.6, 0.45, 0.1, 0.0])
    got = deblur.estimate(rho4, torch.tensor([1.2, 0.95, 0.8, 0.7, 0.4, 0.4]), cal)
    # Above RHO_CLEAN: unfiltered (sharpened stegos too); between grid points: linear; past the end: the last a.
    assert torch.allclose(got, torch.tensor([0.0, 0.0, 0.1, 0.15, 0.3, 0.3]), atol=1e-6)
    # A base pilot that survived far better than that blur lets it (JPEG): faded out, fully past CONSISTENT_HI.
    lo, hi = deblur.CONSISTENT_LO, deblur.CONSISTENT_HI
    rho8 = torch.tensor([0.4 * lo, 0.4 * (lo + hi) / 2, 0.4 * hi, 1.0])
    faded = deblur.estimate(torch.full((4,), 0.1), rho8, cal)
    assert torch.allclose(faded, torch.tensor([0.3, 0.15, 0.0, 0.0]), atol=1e-5)


def test_calibration_falls_with_the_blur() -> None:
    _, model = _pair()
    model.restore(torch.full((1, 3, 64, 64), 0.5))
    cal = model.restoration.deblur.calibration
    assert cal.rho4[0] == 1.0 and cal.rho8[0] == 1.0 and min(cal.clean) > 0
    assert all(b < a for a, b in zip(cal.rho4, cal.rho4[1:], strict=False))
    assert all(b < a for a, b in zip(cal.rho8, cal.rho8[1:], strict=False))
    assert cal.a[-1] >= 1 / 3  # the 3x3 mean filter is inside the range it can tell apart


@pytest.mark.parametrize(
    ("attack", "lo", "hi"),
    [
        ("clean", 0.0, 0.0),
        ("noise5", 0.0, 0.03),
        ("sharpen", 0.0, 0.0),
        ("gauss0.5", 0.08, 0.14),
        ("gauss1", 0.24, 0.31),
        ("mean3", 0.30, 0.38),
        ("mirror+mean3", 0.30, 0.38),
        ("jpeg75", 0.0, 0.0),
    ],
)
def test_the_pilot_tells_how_strong_the_blur_was(attack: str, lo: float, hi: float, photo_factory) -> None:
    _, model = _pair()
    cover, secret = _photos(photo_factory, 2, seed=30), _photos(photo_factory, 2, seed=40)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        stego = D.quantize(model.embed(cover, secret))
        seen = {
            "clean": lambda x: x,
            "noise5": lambda x: D.gaussian_noise(x, 5.0, gen),
            "sharpen": D.sharpen,
            "gauss0.5": lambda x: D.gaussian_filter(x, 0.5),
            "gauss1": lambda x: D.gaussian_filter(x, 1.0),
            "mean3": D.mean_filter,
            "mirror+mean3": lambda x: D.mean_filter(x.flip(-1)),
            "jpeg75": lambda x: _jpeg(x, 75),
        }[attack](stego)
        model.restore(stego[:1])
        a = model.restoration.deblur.blur_of(D.quantize(seen))
    assert ((a >= lo) & (a <= hi)).all(), a


def test_a_deblurring_model_gives_more_secret_back_after_a_blur(photo_factory) -> None:
    """Same weights: after a 3x3 mean or Gaussian filter the secret comes back better with the deblur; clean and
    mirrored stegos give exactly what they gave without it."""
    plain, model = _pair()
    cover, secret = _photos(photo_factory, 2, seed=30), _photos(photo_factory, 2, seed=40)
    with torch.no_grad():
        stego = D.quantize(model.embed(cover, secret))
        assert torch.equal(stego, D.quantize(plain.embed(cover, secret)))  # embed is not touched
        for seen in (stego, stego.flip(-1)):
            assert torch.equal(model.reveal(seen), plain.reveal(seen))
        for attack in (D.mean_filter, D.gaussian_filter):
            seen = D.quantize(attack(stego))
            without = psnr(plain.reveal(seen) * 255, secret * 255).mean().item()
            with_it = psnr(model.reveal(seen) * 255, secret * 255).mean().item()
            assert with_it > without + 0.3, (attack.__name__, without, with_it)


def test_training_reveals_through_the_deblur_with_a_gradient(photo_factory) -> None:
    _, model = _pair()
    stego = D.mean_filter(_photos(photo_factory, 1, seed=50)).requires_grad_(True)
    out = model.restore(stego)
    assert not torch.equal(out, stego)
    out.sum().backward()
    assert stego.grad is not None and stego.grad.abs().sum() > 0


def test_deblur_without_the_thumbnail_code_is_refused() -> None:
    with pytest.raises(ValueError, match="thumbnail code"):
        get_config("fast", deblur=True, thumbnail_code=False)


def test_checkpoints_without_the_deblur_load_without_it() -> None:
    from pipeline.model.migrate import config_from_dict

    old = {k: v for k, v in flat_config("fast").items() if k != "deblur"}  # a version-2 file from before it
    cfg = config_from_dict({"version": 2, **old})
    assert cfg.codes.deblur.enabled is False


@pytest.mark.parametrize("base_layout", ["low", "quiet"])
def test_four_secrets_in_either_layout_register_and_measure_a_mean_filter(base_layout: str, photo_factory) -> None:
    """Registration and the deblur measure the pilots of (2,3) and (3,2) alone, which every layout shares: the
    quiet layout's (2,5) and (5,2) keep 8% of their gain after a 3x3 mean, and summed in they hid the blur."""
    cfg = get_config("fast", num_secrets=4, base_layout=base_layout, deblur=True, register=True, mirror="pilot")
    model = build_model(cfg).eval()
    cover = _photos(photo_factory, 2, seed=30)
    secrets = torch.cat([_photos(photo_factory, 2, seed=40 + 10 * j) for j in range(4)], dim=1)
    with torch.no_grad():
        seen = D.quantize(D.mean_filter(D.quantize(model.embed(cover, secrets))))
        model.restore(seen[:1])
        a = model.restoration.deblur.blur_of(seen)
        found = Registration(model.thumbnail.reader).search(seen)
    assert ((a >= 0.2) & (a <= 0.45)).all(), a
    assert (found.dy == 0).all() and (found.dx == 0).all() and not found.mirrored.any(), found
