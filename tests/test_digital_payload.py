import pytest

from pipeline.model.digital import payload as pl


def test_round_trip_with_and_without_message():
    p = pl.LevelPayload(2, ((5, b"stream-one"), (1, b"two")), b"asset-42")
    data = pl.pack(p, 64)
    assert len(data) == 64 and pl.crc_ok(data)
    assert pl.parse(data) == p
    q = pl.LevelPayload(0, ((2, b"x" * 20),))
    assert pl.parse(pl.pack(q, 40)) == q


def test_crc_catches_any_single_bit_flip():
    data = bytearray(pl.pack(pl.LevelPayload(1, ((5, b"abc"),), b"m"), 32))
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not pl.crc_ok(bytes(flipped))


def test_too_large_is_refused_and_budget_matches_pack():
    budget = pl.stream_budget(96, 2, 32)
    p = pl.LevelPayload(0, ((5, b"a" * budget), (5, b"b" * budget)), b"m" * 32)
    assert len(pl.pack(p, 96)) == 96
    too_big = pl.LevelPayload(0, ((5, b"a" * (budget + 1)), (5, b"b" * (budget + 1))), b"m" * 32)
    with pytest.raises(pl.PayloadError):
        pl.pack(too_big, 96)
