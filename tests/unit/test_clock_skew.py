import pytest

from trackway.domain.errors import EventRejected
from trackway.domain.events import validate_event

RECEIVED = 1767225620000  # 2026-01-01T00:00:20Z


def test_timestamp_moves_by_the_client_clock_error() -> None:
    # The client's clock is 10 s behind ours: it said it sent at :10 what we got at :20.
    body = {"event": "v", "cookie": "c", "timestamp": "2026-01-01T00:00:00Z",
            "sent_at": "2026-01-01T00:00:10Z"}  # fmt: skip
    event = validate_event(body, RECEIVED)
    assert (event.timestamp, event.timestamp_ms) == ("2026-01-01T00:00:10.000Z", 1767225610000)
    assert event.body["sent_at"] == "2026-01-01T00:00:10Z"


def test_no_sent_at_or_no_skew_keeps_the_timestamp() -> None:
    plain = validate_event({"event": "v", "cookie": "c", "timestamp": "2026-01-01T00:00:00Z"},
                           RECEIVED)  # fmt: skip
    assert plain.timestamp == "2026-01-01T00:00:00Z"
    same = validate_event({"event": "v", "cookie": "c", "timestamp": "2026-01-01T00:00:00Z",
                           "sent_at": RECEIVED / 1000}, RECEIVED)  # fmt: skip
    assert same.timestamp == "2026-01-01T00:00:00Z"


def test_bad_sent_at_names_the_field() -> None:
    with pytest.raises(EventRejected) as caught:
        validate_event({"event": "v", "cookie": "c", "timestamp": 1, "sent_at": "soon"}, RECEIVED)
    assert list(caught.value.errors) == ["sent_at"]
    assert caught.value.error_type == "invalid_event_attributes"
