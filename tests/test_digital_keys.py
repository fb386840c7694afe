import os
import stat

import pytest

from pipeline.model.digital.keys import (
    KEY_ENV,
    PUBLIC,
    Key,
    KeyFileError,
    generate_key_file,
    parse_key,
    read_key_file,
    resolve_key,
)


def test_keygen_writes_64_hex_readable_by_owner_only(tmp_path):
    path = tmp_path / "job.key"
    key = generate_key_file(path)
    text = path.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_key_file(path) == key
    with pytest.raises(FileExistsError):
        generate_key_file(path)  # never overwrites a key silently


def test_two_keys_differ_and_give_different_streams(tmp_path):
    a, b = generate_key_file(tmp_path / "a"), generate_key_file(tmp_path / "b")
    assert a.secret != b.secret
    assert (a.rng("dither").random(8) != b.rng("dither").random(8)).all()
    assert (a.rng("dither").random(8) != a.rng("interleave").random(8)).all()
    assert (a.rng("dither").random(8) == a.rng("dither").random(8)).all()  # a stream is reproducible


def test_key_id_and_repr_hide_the_secret():
    key = parse_key("ab" * 32)
    assert len(key.key_id) == 12 and key.key_id not in ("ab" * 32)
    assert "ab" * 4 not in repr(key) and key.key_id in repr(key)


@pytest.mark.parametrize("text", ["", "ab" * 31, "zz" * 32, "ab" * 33])
def test_malformed_keys_are_refused(text):
    with pytest.raises(KeyFileError):
        parse_key(text)


def test_resolve_order_file_then_environment_then_public(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert resolve_key(None) == PUBLIC and PUBLIC.public
    path = tmp_path / "k"
    key = generate_key_file(path)
    monkeypatch.setenv(KEY_ENV, str(path))
    assert resolve_key(None) == key and not key.public
    monkeypatch.setenv(KEY_ENV, "cd" * 32)
    assert resolve_key(None) == Key(bytes.fromhex("cd" * 32))
    assert resolve_key(path) == key  # an explicit key wins over the environment
    with pytest.raises(KeyFileError, match="not found"):
        resolve_key(tmp_path / "missing")
