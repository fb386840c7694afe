"""Keys of the digital layer: 32 secret bytes from which every keyed pattern is derived.

The dither of the QIM lattices, the interleaver that spreads each codeword over the image and the synchronisation
pilot are drawn from streams derived from the key (HMAC-SHA256 of the key and the stream's purpose, seeding a PCG64
generator). Without the key the lattices are unknown: a reader sees noise, no CRC passes, nothing is detected.

A key file holds the 32 bytes as 64 hexadecimal characters (``python -m pipeline keygen`` writes one readable by its
owner alone). Where no key is given the documented ``PUBLIC_KEY`` is used: anyone can then read the mark, and the
jobs say so. Logs, Parquet files and job records name a key only by its id (``Key.key_id``, a hash prefix).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KEY_BYTES = 32
# The environment variable a key file's path (or the 64 hex characters themselves) can come from.
KEY_ENV = "SRIS_KEY"
# The public key: 32 bytes anyone can derive ("sris-pipeline public key" hashed). Marks made with it are readable
# by everyone; it exists so a job without a key still writes a verifiable mark.
PUBLIC_KEY = hashlib.sha256(b"sris-pipeline public key v1").digest()


class KeyFileError(ValueError):
    """A key file or key text that is not 64 hexadecimal characters (32 bytes)."""


@dataclass(frozen=True)
class Key:
    """A digital-layer key: ``secret`` (32 bytes); ``public`` says it is the documented public key."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise KeyFileError(f"a key is {KEY_BYTES} bytes, got {len(self.secret)}")

    @property
    def public(self) -> bool:
        return hmac.compare_digest(self.secret, PUBLIC_KEY)

    @property
    def key_id(self) -> str:
        """A 12-hex-character id (a hash prefix): safe to log and store; the key cannot be recovered from it."""
        return hashlib.sha256(b"sris-key-id" + self.secret).hexdigest()[:12]

    def seed(self, purpose: str) -> int:
        """A 128-bit seed for one keyed stream (``purpose`` names it: "dither", "interleave", ...)."""
        digest = hmac.new(self.secret, purpose.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:16], "little")

    def rng(self, purpose: str) -> np.random.Generator:
        """A fresh generator for ``purpose``: the same key and purpose always give the same stream."""
        return np.random.Generator(np.random.PCG64(self.seed(purpose)))

    def __repr__(self) -> str:  # never print the secret
        return f"Key(id={self.key_id}{', public' if self.public else ''})"


PUBLIC = Key(PUBLIC_KEY)


def parse_key(text: str) -> Key:
    """A key from its 64 hexadecimal characters (surrounding whitespace ignored)."""
    t = text.strip()
    if len(t) != 2 * KEY_BYTES:
        raise KeyFileError(f"a key is {2 * KEY_BYTES} hexadecimal characters, got {len(t)}")
    try:
        return Key(bytes.fromhex(t))
    except ValueError:
        raise KeyFileError("a key holds hexadecimal characters only (0-9, a-f)") from None


def read_key_file(path: str | os.PathLike[str]) -> Key:
    """The key in a key file (64 hexadecimal characters)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"key file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {p}: {exc}") from None
    try:
        return parse_key(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{p}: {exc}") from None


def resolve_key(key: Key | str | os.PathLike[str] | bytes | None = None) -> Key:
    """The key to use: a ``Key``; 32 raw bytes; a key file's path; else the ``SRIS_KEY`` environment variable (a key
    file's path or the 64 hex characters); else the public key."""
    if isinstance(key, Key):
        return key
    if isinstance(key, bytes):
        return Key(key)
    if key is not None:
        return read_key_file(key)
    env = os.environ.get(KEY_ENV, "").strip()
    if not env:
        return PUBLIC
    if len(env) == 2 * KEY_BYTES and not Path(env).exists():
        return parse_key(env)
    return read_key_file(env)


def generate_key_file(path: str | os.PathLike[str], overwrite: bool = False) -> Key:
    """Write a new random key to ``path`` (64 hex characters and a newline), readable and writable by its owner only
    (mode 0600, set when the file is created, so the key is never readable by others even for a moment)."""
    p = Path(path)
    key = Key(secrets.token_bytes(KEY_BYTES))
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(p, flags, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.secret.hex() + "\n")
    os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)  # an overwritten file keeps its old mode otherwise
    return key
