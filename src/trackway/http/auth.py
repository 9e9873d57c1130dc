"""HTTP Basic auth as the API's clients send it: the key is the username, the password empty.

Three forms are in use and all are accepted: `Basic base64(key:)`, `Basic base64(key)` and a
bare `base64(key:)` without the scheme (a widespread mobile SDK sends that one).
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from trackway.domain.errors import TrackwayError

MAX_HEADER = 1024


# Sent with a 401 of the read API and the clickstream page, so that a browser asks for the key.
CHALLENGE = 'Basic realm="Trackway"'


class NotAuthorized(TrackwayError):
    """No key, a malformed header, or a key no account has. `challenge`: answer with
    WWW-Authenticate (the read API and the clickstream page; not ingest, whose browser callers
    must never see a sign-in prompt)."""

    def __init__(self, *, challenge: bool = False) -> None:
        super().__init__()
        self.challenge = challenge


class PermissionDenied(TrackwayError):
    """A valid key of a kind that may not do this (the event key on a read endpoint)."""


def authorization_header(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The raw Authorization value among an ASGI scope's headers."""
    for name, value in headers:
        if name == b"authorization":
            return bytes(value)
    return None


def key_from_authorization(header: bytes | str | None) -> str | None:
    """The API key in an Authorization header value, or None when there is none to find."""
    if not header or len(header) > MAX_HEADER:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("latin-1")
        except UnicodeDecodeError:
            return None
    value = header.strip()
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "basic":
        value = rest.strip()
    elif rest:
        return None
    value += "=" * (-len(value) % 4)
    try:
        decoded = b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    key, _colon, password = decoded.partition(":")
    # A key sent as the password is refused: the documented form leaves the password empty.
    if password or not key or not key.isprintable():
        return None
    return key
