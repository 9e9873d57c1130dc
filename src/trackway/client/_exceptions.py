"""The client's exceptions: one tree under TrackwayClientError."""

from __future__ import annotations


class TrackwayClientError(Exception):
    """Base of every error the client raises, and the reason handed to `on_error` for events
    abandoned because the client was closed before they could be sent."""


class QueueFullError(TrackwayClientError):
    """`track()` found `max_queue` events already waiting, and `on_full="raise"`."""
