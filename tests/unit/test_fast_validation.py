"""The fast path of validation (_accept_common) against the rules one by one
(_check_every_rule): whenever the fast path accepts a body, the full rules accept it too, with
the same AcceptedEvent; the common bodies do take the fast path."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackway.domain import events
from trackway.domain.errors import EventRejected

RECEIVED = 1_764_000_000_000
AHEAD = events.MAX_AHEAD_MS

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        ["", " ", "<script>x</script>", "< script", "2026-11-30T10:00:00Z", "2026-11-30",
         "1764000000", "0", "a b", "\t", "ok", "x" * 300, "Ann@Example.com", "<b>bold</b>"]
    ),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
seed_values = {
    "event": st.sampled_from(["view", "add_to_cart", "", " ", "a.b", "12", "x" * 65, "bad name",
                              "<script>", "identify"]) | scalars,
    "customer_id": st.sampled_from(["812123", " 812123 ", "0", "", "x" * 65, "<script>"])
    | st.integers(-5, 10**12) | scalars,
    "retailer_customer_id": scalars,
    "email": st.sampled_from(["ann@example.com", "Ann@Example.COM", "bad", "", "a b@c.d",
                              "<script>@x.com"]) | scalars,
    "email_hash": st.sampled_from(["0" * 32, "g" * 32]) | scalars,
    "device_id": st.sampled_from(["dev-1", "", " ", "a b", "00000000-0000-0000-0000-000000000000",
                                  "d" * 256]) | scalars,
    "cookie": st.sampled_from(["c1", "", "c 1", "k" * 256]) | st.integers(0, 99) | scalars,
    "event_uuid": st.sampled_from(["", "8C1B4E1A-5B0C-4F55-8A0E-2B1C3D4E5F60", "not-a-uuid"])
    | st.uuids().map(str) | scalars,
    "timestamp": st.sampled_from(["2026-11-30T10:00:00Z", "2026-11-30T10:00:00.123456+02:00",
                                  "2099-01-01T00:00:00Z", "garbage", 1764000000, 1764000000.5,
                                  ""]) | scalars,
    "sent_at": st.sampled_from(["2026-11-30T10:00:05Z", "garbage", "", 1764000001]) | scalars,
    "user_agent": scalars,
    "ip": scalars,
    "url": scalars,
    "site": scalars,
    "session_uuid": scalars,
    "device_type": scalars,
    "verification_key": scalars,
    "subscription_groups": json_values,
    "latitude": scalars,
    "timestamp_epoch": scalars,
    "_bsft_type": json_values,
}  # fmt: skip


def mostly(valid: list[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value eight times in ten, anything else otherwise."""
    return st.integers(0, 9).flatmap(lambda n: st.sampled_from(valid) if n > 1 else wild)


@st.composite
def bodies(draw: Any) -> dict[str, Any]:
    """Mostly valid bodies (an event and an identifier), with a few seed fields each, of
    values mostly valid, sometimes anything: both paths get to answer often."""
    body: dict[str, Any] = {
        "event": draw(mostly(["view", "identify", "add_to_cart"], seed_values["event"])),
    }
    identifier = draw(st.sampled_from(["customer_id", "email", "device_id", "cookie"]))
    body[identifier] = draw(mostly(VALID[identifier], seed_values[identifier]))
    for name, values in seed_values.items():
        if name in body or draw(st.integers(0, 9)) > 1:
            continue
        body[name] = draw(mostly(VALID[name], values) if name in VALID else values)
    for _ in range(draw(st.integers(0, 4))):
        name = draw(mostly(["product_id", "price", "in_stock", "tags", "meta", "when"],
                           st.sampled_from(["x" * 101, "n", "é", "<script>"])))  # fmt: skip
        body[name] = draw(mostly(CUSTOM_VALUES, json_values))
    return body


CUSTOM_VALUES: list[Any] = [
    "SKU-1", 59.9, 3, True, False, None, ["a", 1], {"k": [1, {"d": "x"}]}, [],
    "2026-11-30T10:00:00Z", "2026-11-30", "https://shop.example/p?q=<b>",
]  # fmt: skip
VALID: dict[str, list[Any]] = {
    "customer_id": ["812123", 812123, " c-9 "],
    "email": ["ann@example.com", "Ann@Example.COM"],
    "device_id": ["dev-1", "D-2"],
    "cookie": ["c1", 42],
    "event_uuid": ["", "8C1B4E1A-5B0C-4F55-8A0E-2B1C3D4E5F60"],
    "timestamp": ["2026-11-30T10:00:00Z", "2026-11-30T10:00:00.123456+02:00", 1764000000],
    "sent_at": ["2026-11-30T10:00:05Z", 1764000001, ""],
    "user_agent": ["Mozilla/5.0", None],
    "ip": ["203.0.113.7"],
    "url": ["https://shop.example/p/1"],
    "device_type": ["ios"],
}


def full_rules(
    body: dict[str, Any], correct: bool = True, bound: int = events.MAX_EVENT_ATTRIBUTES
) -> events.AcceptedEvent | None:
    try:
        return events._check_every_rule(body, RECEIVED, None, correct, AHEAD, bound)
    except EventRejected:
        return None


def assert_same(fast: events.AcceptedEvent, full: events.AcceptedEvent, body: dict[str, Any]):
    generated = body.get("event_uuid") in (None, "")
    for field in events.AcceptedEvent.__struct_fields__:
        if field == "attribute_types":
            continue
        a, b = getattr(fast, field), getattr(full, field)
        if field == "event_uuid" and generated:
            assert uuid.UUID(a).version == 7 and uuid.UUID(b).version == 7
        elif field == "body" and generated:
            assert {**a, "event_uuid": None} == {**b, "event_uuid": None}
        else:
            assert a == b, (field, a, b)
    assert fast.attribute_types == events.custom_attribute_types(full.body)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), correct=st.booleans(), bound=st.sampled_from([1, 2, 3, 5, 8, 1000]))
def test_the_fast_path_accepts_only_what_the_rules_accept_and_alike(
    body: dict[str, Any], correct: bool, bound: int
) -> None:
    """Also under a bound of fields per event (--max-event-attributes) as small as the
    bodies drawn, so that both paths meet it."""
    fast = events._accept_common(dict(body), RECEIVED, correct, AHEAD, bound)
    if fast is None:
        return
    full = full_rules(dict(body), correct, bound)
    assert full is not None, f"the fast path accepted what the rules refuse: {body!r}"
    assert_same(fast, full, body)


COMMON = [
    {"event": "view", "customer_id": "bench-0-1", "product_id": "SKU-5", "category": "shoes",
     "price": 59.9, "currency": "USD", "in_stock": True,
     "page_url": "https://shop.example.com/p/5?ref=home"},
    {"event": "identify", "customer_id": 812123, "email": "Ann@Example.com", "firstname": "Ann",
     "device_type": "ios"},
    {"event": "pageload", "cookie": "0b7e4c2a", "url": "https://shop.example/", "referrer": "",
     "user_agent": "Mozilla/5.0", "ip": "127.0.0.1", "timestamp": 1764000000},
    {"event": "purchase", "device_id": "dev-9", "event_uuid": str(uuid.uuid4()),
     "timestamp": "2026-11-30T10:00:00.123Z", "sent_at": "2026-11-30T10:00:01Z",
     "products": [{"sku": "p1", "price": 9.99}], "order": {"id": "o-1", "total": 9.99}},
]  # fmt: skip


@pytest.mark.parametrize("body", COMMON)
def test_common_bodies_take_the_fast_path(body: dict[str, Any]) -> None:
    fast = events._accept_common(dict(body), RECEIVED, True, AHEAD, events.MAX_EVENT_ATTRIBUTES)
    assert fast is not None
    full = full_rules(dict(body))
    assert full is not None
    assert_same(fast, full, body)
    # And validate_event, the one entry, answers the same.
    assert_same(events.validate_event(dict(body), RECEIVED), full, body)
