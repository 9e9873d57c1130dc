"""The client's retry decisions without I/O: backoff with full jitter, Retry-After, what each
answer means, and the delivery steps of one batch."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from trackway.client._batch import (
    CLOSED,
    Delivered,
    GiveUp,
    Send,
    Wait,
    delivery,
    encode_event,
    read_answer,
    utc_timestamp,
)
from trackway.client._retry import RetryPolicy, backoff_delay, parse_retry_after

# --- backoff_delay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0)],
)
def test_ceiling_doubles_from_base_up_to_the_cap(attempt, ceiling):
    assert backoff_delay(attempt, 0.5, 30.0, uniform=lambda: 1.0) == ceiling
    assert backoff_delay(attempt, 0.5, 30.0, uniform=lambda: 0.0) == 0.0
    assert backoff_delay(attempt, 0.5, 30.0, uniform=lambda: 0.5) == ceiling / 2


def test_full_jitter_spreads_over_the_whole_range():
    rng = random.Random(7)
    samples = [backoff_delay(3, 0.5, 30.0, uniform=rng.random) for _ in range(2000)]
    assert all(0.0 <= s <= 4.0 for s in samples)
    assert min(samples) < 0.2 and max(samples) > 3.8  # not "base plus a little"
    assert 1.8 < sum(samples) / len(samples) < 2.2


def test_a_huge_attempt_does_not_overflow():
    assert backoff_delay(10_000, 0.5, 30.0, uniform=lambda: 1.0) == 30.0


def test_a_negative_attempt_is_refused():
    with pytest.raises(ValueError):
        backoff_delay(-1, 0.5, 30.0)


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date():
    now = datetime(2024, 6, 24, 4, 53, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after(earlier, now=now) == 0.0


def test_policy_prefers_retry_after_capped_at_backoff_max():
    policy = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=5.0)
    assert policy.delay(0, retry_after=2.0) == 2.0
    assert policy.delay(0, retry_after=3600.0) == 5.0
    assert policy.delay(2, uniform=lambda: 1.0) == 0.04
    assert policy.delay(3) is None  # three retries spent
    assert policy.delay(3, retry_after=1.0) is None


# --- what an answer means ---------------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://trackway.test/api/v1/bulkevents")


def partial(*indices: int) -> httpx.Response:
    errors = [
        {"index": i, "event_uuid": None, "errors": {"email": ["is not valid"]}} for i in indices
    ]
    return httpx.Response(
        400, json={"status": "partial", "count": 3 - len(indices), "errors": errors}
    )


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (httpx.Response(200, json={"status": "ok", "count": 3}), "ok"),
        (partial(1), "partial"),
        (httpx.Response(400, json={"errors": {"events": ["must be an array"]}}), "fatal"),
        (httpx.Response(400, json={"status": "partial", "errors": [{"index": 9}]}), "fatal"),
        (httpx.Response(401, json={"message": "Not authorized"}), "fatal"),
        (httpx.Response(403), "fatal"),
        (httpx.Response(404), "fatal"),
        (httpx.Response(422), "fatal"),
        (httpx.Response(413), "too_large"),
        (httpx.Response(429, headers={"retry-after": "7"}), "retry"),
        (httpx.Response(500), "retry"),
        (httpx.Response(502), "retry"),
        (httpx.Response(503, headers={"retry-after": "1"}), "retry"),
        (httpx.Response(504), "retry"),
        (httpx.ConnectError("refused", request=REQUEST), "retry"),
        (httpx.ReadTimeout("slow", request=REQUEST), "retry"),
        (httpx.WriteError("reset", request=REQUEST), "retry"),
        (httpx.RemoteProtocolError("closed", request=REQUEST), "retry"),
        (httpx.UnsupportedProtocol("ftp://", request=REQUEST), "fatal"),
        (RuntimeError("a bug"), "fatal"),
        (CLOSED, "fatal"),
    ],
)
def test_answer_kinds(reply, kind):
    assert read_answer(reply, 3).kind == kind


def test_retry_after_is_read_from_429_and_503():
    assert read_answer(httpx.Response(429, headers={"retry-after": "7"}), 1).retry_after == 7.0
    assert read_answer(httpx.Response(503), 1).retry_after is None


# --- the delivery of one batch ----------------------------------------------------------------


def events(n: int) -> list[bytes]:
    return [encode_event("view", {"customer_id": str(i)})[1] for i in range(n)]


def uuids_of(body: bytes) -> list[str]:
    return [e["event_uuid"] for e in json.loads(body)["events"]]


def drive(batch, replies, policy=None):
    """Run delivery() with scripted replies (for Send) and no aborts (for Wait); the steps."""
    policy = policy or RetryPolicy(max_retries=5, backoff_base=0.5, backoff_max=30.0)
    steps = delivery(batch, policy)
    replies = list(replies)
    taken = []
    reply = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration:
            return taken
        taken.append(step)
        reply = (
            replies.pop(0)
            if isinstance(step, Send)
            else (False if isinstance(step, Wait) else None)
        )


def test_a_lost_answer_resends_the_very_same_body():
    batch = events(3)
    steps = drive(batch, [httpx.ReadTimeout("lost", request=REQUEST), httpx.Response(200)])
    sends = [s for s in steps if isinstance(s, Send)]
    assert len(sends) == 2 and sends[0].body == sends[1].body
    assert isinstance(steps[1], Wait) and 0 <= steps[1].seconds <= 0.5
    assert steps[-1] == Delivered(3)


def test_retry_after_is_the_wait():
    steps = drive(
        events(1), [httpx.Response(503, headers={"retry-after": "2"}), httpx.Response(200)]
    )
    assert [type(s) for s in steps] == [Send, Wait, Send, Delivered]
    assert steps[1].seconds == 2.0


def test_retries_are_spent_then_given_up_with_the_last_answer():
    policy = RetryPolicy(max_retries=2, backoff_base=0.0, backoff_max=0.0)
    last = httpx.Response(502)
    steps = drive(events(2), [httpx.Response(500), httpx.Response(503), last], policy)
    assert [type(s) for s in steps] == [Send, Wait, Send, Wait, Send, GiveUp]
    assert steps[-1].reason is last and len(steps[-1].events) == 2


def test_a_partial_answer_gives_up_only_the_rejected_events_without_retry():
    batch = events(3)
    response = partial(1)
    steps = drive(batch, [response])
    assert [type(s) for s in steps] == [Send, Delivered, GiveUp]
    assert steps[1] == Delivered(2)
    assert [e["customer_id"] for e in steps[2].events] == ["1"]
    assert steps[2].reason is response


def test_a_401_is_given_up_at_once():
    steps = drive(events(2), [httpx.Response(401)])
    assert [type(s) for s in steps] == [Send, GiveUp]


def test_413_splits_in_order_and_a_lone_event_is_given_up():
    batch = events(4)
    # 4 → 413; [0,1] → 413; [0] ok; [1] → 413 (alone: given up); [2,3] ok.
    replies = [httpx.Response(413)] * 2 + [httpx.Response(200), httpx.Response(413)]
    steps = drive(batch, [*replies, httpx.Response(200)])
    sent = [uuids_of(s.body) for s in steps if isinstance(s, Send)]
    all_uuids = uuids_of(steps[0].body)
    assert sent == [all_uuids, all_uuids[:2], all_uuids[:1], all_uuids[1:2], all_uuids[2:]]
    assert [type(s) for s in steps if not isinstance(s, Send)] == [Delivered, GiveUp, Delivered]


def test_closing_during_a_wait_gives_up_the_batch():
    steps = delivery(events(2), RetryPolicy())
    assert isinstance(next(steps), Send)
    assert isinstance(steps.send(httpx.Response(503)), Wait)
    give_up = steps.send(True)  # closed while waiting
    assert isinstance(give_up, GiveUp) and give_up.reason is CLOSED and len(give_up.events) == 2


# --- events -----------------------------------------------------------------------------------


def test_encode_event_stamps_uuid_and_timestamp_once():
    event_uuid, data = encode_event("view", {"customer_id": "1"})
    body = json.loads(data)
    assert body["event_uuid"] == event_uuid and len(event_uuid) == 36
    assert body["timestamp"].endswith("Z") and len(body["timestamp"]) == 24


def test_utc_timestamp_has_milliseconds_and_z():
    moment = datetime(2024, 6, 24, 6, 53, 54, 123456, tzinfo=UTC)
    assert utc_timestamp(moment) == "2024-06-24T06:53:54.123Z"
