"""The carrier (pipeline/model/carrier.py): the analytic linear code SRIS-Net's learnable carrier starts from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.model import build_model, get_config
from pipeline.model.carrier import COEFFS, PILOT, CarrierReader, CarrierWriter, dct_basis, pilot
from pipeline.model.config import ModelConfig
from pipeline.train import attacks as A


def test_dct_basis_is_orthonormal() -> None:
    basis = torch.stack([dct_basis(u, v).flatten() for u in range(4) for v in range(4)])
    assert torch.allclose(basis @ basis.T, torch.eye(16), atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_code_reads_back_the_block_means_whatever_the_cover(k: int, photo_factory) -> None:
    torch.manual_seed(0)
    covers = torch.stack([torch.from_numpy(photo_factory(32, 32, seed=i)).permute(2, 0, 1) for i in range(2)]) / 255
    covers = 0.25 + 0.5 * covers  # no clipping at 0 or 1: this measures rounding alone
    secrets = torch.rand(2, 3 * k, 32, 32)
    writer, reader = CarrierWriter(3, k, 12.0), CarrierReader(3, k, 12.0)
    with torch.no_grad():
        stego = covers + writer(covers, secrets)
        coefficients = reader.read(F.pixel_unshuffle(stego, 4)) * reader.read_scale
        expected = F.avg_pool2d(secrets, 4) - 0.5 + PILOT * pilot(8, 8, stego)
        assert torch.allclose(coefficients, expected, atol=1e-5)  # exact before rounding, whatever the cover
        assert reader(stego).shape == secrets.shape
        rounded = reader.thumbnails(A.quantize(stego))
        err = (rounded - F.avg_pool2d(secrets, 4)).abs()
        # 8-bit rounding (+-0.5 grey level per pixel) and the pilot's gain estimate from only 64 blocks per channel.
        assert err.mean() < 0.03 and err.max() < 0.12
        # The code only touches its coefficients: the rest of each 4x4 block of the cover is unchanged.
        others = [dct_basis(u, v) for u in range(4) for v in range(4) if (u, v) not in COEFFS[:k]]
        for p in others:
            w = p[None, None].expand(3, 1, 4, 4)
            diff = F.conv2d(stego - covers, w, stride=4, groups=3)
            assert diff.abs().max() < 1e-5


@pytest.mark.parametrize("gain", [0.2, 1.0, 4.0])
def test_pilot_undoes_a_gain_on_the_code(gain: float) -> None:
    """A filter that scales the code's frequency by ``gain`` (here applied to the code alone) is measured by the
    pilot and divided out."""
    torch.manual_seed(0)
    secrets = torch.rand(1, 3, 256, 256)
    flat = torch.full((1, 3, 256, 256), 0.5)
    writer, reader = CarrierWriter(3, 1, 10.0), CarrierReader(3, 1, 10.0)
    with torch.no_grad():
        thumbs = reader.thumbnails(flat + gain * writer(flat, secrets))
    assert (thumbs - F.avg_pool2d(secrets, 4)).abs().mean() < 0.01


def test_sris_net_starts_as_the_carrier_code() -> None:
    """Untrained, with the carrier, SRIS-Net already reveals a recognisable secret; without, it does not."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    secrets = torch.stack([torch.stack([yy, xx, (yy + xx) / 2]), torch.stack([xx, 1 - yy, yy * xx])])
    covers = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    psnr = {}
    for carrier in (True, False):
        model = build_model(get_config("tiny", carrier=carrier)).eval()
        with torch.inference_mode():
            rec = model.reveal(A.quantize(model.embed(covers, secrets)))
        psnr[carrier] = (10 * torch.log10(1 / (rec - secrets).square().mean())).item()
    assert psnr[True] > 25 and psnr[False] < 15


def test_checkpoints_from_before_the_carrier_load_without_it() -> None:
    old = get_config("tiny").to_dict()
    del old["carrier"], old["carrier_amplitude"]
    assert not ModelConfig.from_dict(old).carrier
    assert get_config("tiny").carrier and get_config("tiny", carrier=False).multiple == 4
