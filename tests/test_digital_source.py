import numpy as np
import pytest
from digital_kit import psnr_u8, sample_photos

from pipeline.model.digital.source import CODECS, SourceCodingError, decode_secret, encode_secret


@pytest.mark.parametrize("budget", [60, 300])
def test_a_photo_fits_its_budget_and_decodes(budget):
    photo = sample_photos()[0]
    enc = encode_secret(photo, budget, 256)
    assert len(enc.data) <= budget and enc.codec in CODECS
    out = decode_secret(enc.codec_id, enc.data, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert abs(psnr_u8(out, photo) - enc.psnr) < 1e-6
    assert enc.psnr > (12 if budget < 100 else 15)


def test_more_bytes_give_a_better_secret():
    photo = sample_photos()[1]
    small, large = encode_secret(photo, 80, 256), encode_secret(photo, 600, 256)
    assert large.psnr > small.psnr + 2


def test_flat_graphics_code_losslessly_when_that_is_smaller():
    logo = np.zeros((256, 256, 3), np.uint8)
    logo[64:192, 64:192] = (200, 30, 30)
    enc = encode_secret(logo, 400, 256)
    assert enc.psnr == float("inf") or enc.psnr > 45


def test_budget_too_small_and_corrupt_stream_are_clear_errors():
    with pytest.raises(SourceCodingError, match="no codec fits"):
        encode_secret(sample_photos()[0], 10, 256)
    with pytest.raises(SourceCodingError, match="does not decode"):
        decode_secret("vp8", b"\x00" * 40, 256)
    with pytest.raises(SourceCodingError, match="unknown codec"):
        decode_secret(99, b"", 256)


def test_the_secrets_coding_is_kept_and_read_back(tmp_path, monkeypatch):
    """A second job with the same secret reads the streams the first chose; a damaged file is coded afresh."""
    from pipeline.model.digital import source

    monkeypatch.setenv(source.CACHE_ENV, str(tmp_path))
    photo = sample_photos()[2][:128, :128]
    first = source.encode_secrets(photo, [80, 300], 128)
    (kept,) = tmp_path.glob("*.json")

    def no_coding(*args, **kwargs):
        raise AssertionError("the cached secret was coded again")

    with monkeypatch.context() as m:
        m.setattr(source, "encode_secret", no_coding)
        assert source.encode_secrets(photo, [80, 300], 128) == first
        with pytest.raises(AssertionError, match="coded again"):  # other budgets: another entry
            source.encode_secrets(photo, [80, 200], 128)
        other = photo.copy()
        other[0, 0] ^= 1
        with pytest.raises(AssertionError, match="coded again"):  # one pixel differs: another secret
            source.encode_secrets(other, [80, 300], 128)
    kept.write_text("{not json")
    assert source.encode_secrets(photo, [80, 300], 128) == first
    assert kept.read_text().startswith("[")  # rewritten whole


def test_the_secret_cache_can_be_turned_off(tmp_path, monkeypatch):
    from pipeline.model.digital import source

    monkeypatch.setenv(source.CACHE_ENV, "0")
    assert source.SecretCache.default() is None
    monkeypatch.setenv(source.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert source.SecretCache.default().folder == str(tmp_path / "c")
    monkeypatch.delenv(source.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert source.SecretCache.default().folder == str(tmp_path / "home" / ".cache" / "sris-pipeline" / "secrets")
