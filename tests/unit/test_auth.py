"""http/auth.py key_from_authorization: the three header forms clients send, and what is not a
key."""

from __future__ import annotations

import base64

import pytest

from trackway.http.auth import MAX_HEADER, key_from_authorization

KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"


def b64(text: str, padding: bool = True) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    return encoded if padding else encoded.rstrip("=")


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + b64(f"{KEY}:"),
        "Basic " + b64(KEY),
        b64(f"{KEY}:"),
        b64(KEY),
        "basic " + b64(f"{KEY}:"),
        "BASIC " + b64(f"{KEY}:"),
        "Basic   " + b64(f"{KEY}:") + "  ",
        "Basic " + b64(f"{KEY}:", padding=False),
    ],
    ids=[
        "basic_key_colon",
        "basic_key",
        "bare_key_colon",
        "bare_key",
        "lowercase_scheme",
        "uppercase_scheme",
        "extra_spaces",
        "unpadded",
    ],
)
def test_accepted_forms(header):
    assert key_from_authorization(header) == KEY
    assert key_from_authorization(header.encode("latin-1")) == KEY


@pytest.mark.parametrize("key", ["k", "a" * 40, "key-with_dashes.and.dots", "ключ"])
def test_any_printable_key_round_trips(key):
    assert key_from_authorization("Basic " + b64(f"{key}:")) == key


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        b"",
        "Basic",
        "Basic ",
        "Basic " + b64(":"),
        "Basic " + b64(""),
        "Basic " + b64(f":{KEY}"),
        "Basic " + b64(f"{KEY}:{KEY}"),
        "Basic " + b64(f"{KEY}:secret"),
        b64(f":{KEY}"),
        b64(f"{KEY}:x"),
        "Bearer " + b64(f"{KEY}:"),
        "Digest " + b64(f"{KEY}:"),
        "Basic " + KEY + "!",
        "Basic !!!!",
        "Basic " + b64(f"{KEY}:") + " extra",
        "%%%%",
        "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
        "Basic " + b64("key\x00:"),
        "Basic " + b64("key\n:"),
        "Basic " + b64(f"{KEY}:") + "é",
        "Basic " + "A" * MAX_HEADER,
    ],
    ids=[
        "none",
        "empty",
        "empty_bytes",
        "scheme_only",
        "scheme_and_space",
        "colon_only",
        "empty_credentials",
        "key_as_password",
        "key_as_both",
        "password_set",
        "bare_key_as_password",
        "bare_password_set",
        "bearer",
        "digest",
        "not_base64",
        "punctuation",
        "trailing_token",
        "bare_garbage",
        "not_utf8",
        "nul_in_key",
        "newline_in_key",
        "non_ascii_after_base64",
        "too_long",
    ],
)
def test_no_key_found(header):
    assert key_from_authorization(header) is None
