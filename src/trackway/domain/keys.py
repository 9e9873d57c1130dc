"""API keys: random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

KEY_KINDS = ("event", "user")


def new_key() -> str:
    """160 random bits, as 40 hexadecimal characters."""
    return secrets.token_hex(20)


def hash_key(key: str) -> str:
    # Keys are long random strings, so one SHA-256 suffices: no dictionary to guard against.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
