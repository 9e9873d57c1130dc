"""domain/events.py: the rules an event body must pass, and the event it becomes."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from trackway.domain.errors import EventRejected
from trackway.domain.events import (
    ERROR_TYPES,
    MAX_NESTING,
    AcceptedEvent,
    custom_attribute_types,
    decode_event_body,
    event_type,
    is_valid_event_name,
    parse_json_object,
    validate_event,
)
from trackway.domain.timestamps import format_ms

RECEIVED = 1700000000123
BLANK = ["can't be blank"]
NOT_VALID = ["is not valid"]
NO_IDENTIFIER = ["customer_id, email, device_id or cookie must be present"]


def ok(**body: Any) -> AcceptedEvent:
    return validate_event(body, RECEIVED)


def rejected(body: dict[str, Any]) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        validate_event(body, RECEIVED)
    return info.value


def test_error_types_are_the_sixteen_of_the_summary_page():
    assert len(ERROR_TYPES) == 16
    assert set(ERROR_TYPES) == {
        "es_index_error",
        "event_name_missing",
        "event_verification_error",
        "invalid_customer_id",
        "invalid_device_id",
        "invalid_email",
        "invalid_event_attributes",
        "invalid_product",
        "invalid_user_attributes",
        "missing_identifier",
        "missing_product",
        "parsing_error",
        "transaction_indexing_error",
        "unknown_error",
        "user_lock_error",
        "user_not_found_error",
    }


def test_a_minimal_event():
    event = ok(event="signup", customer_id="c-1")
    assert event.event == "signup"
    assert event.customer_id == "c-1"
    assert event.received_ms == RECEIVED
    assert event.body["event"] == "signup"
    assert event.body["customer_id"] == "c-1"
    assert event.body["event_uuid"] == event.event_uuid
    assert event.body["timestamp"] == event.timestamp


# (id, body, field, error type, exact messages or None)
RULES: list[tuple[str, dict[str, Any], str, str, list[str] | None]] = [
    ("event_missing", {"customer_id": "c"}, "event", "event_name_missing", BLANK),
    ("event_empty", {"event": "", "customer_id": "c"}, "event", "event_name_missing", BLANK),
    ("event_blank", {"event": " \t", "customer_id": "c"}, "event", "event_name_missing", BLANK),
    ("event_null", {"event": None, "customer_id": "c"}, "event", "event_name_missing", BLANK),
    (
        "event_dot",
        {"event": "a.b", "customer_id": "c"},
        "event",
        "invalid_event_attributes",
        NOT_VALID,
    ),
    (
        "event_space",
        {"event": "a b", "customer_id": "c"},
        "event",
        "invalid_event_attributes",
        NOT_VALID,
    ),
    (
        "event_numeric",
        {"event": "42", "customer_id": "c"},
        "event",
        "invalid_event_attributes",
        NOT_VALID,
    ),
    (
        "event_65",
        {"event": "e" * 65, "customer_id": "c"},
        "event",
        "invalid_event_attributes",
        NOT_VALID,
    ),
    ("event_int", {"event": 7, "customer_id": "c"}, "event", "invalid_event_attributes", NOT_VALID),
    ("no_identifier", {"event": "x"}, "base", "missing_identifier", NO_IDENTIFIER),
    (
        "blank_identifiers",
        {"event": "x", "email": "", "cookie": " "},
        "base",
        "missing_identifier",
        NO_IDENTIFIER,
    ),
    (
        "customer_id_0",
        {"event": "x", "customer_id": "0"},
        "customer_id",
        "invalid_customer_id",
        None,
    ),
    (
        "customer_id_int_0",
        {"event": "x", "customer_id": 0},
        "customer_id",
        "invalid_customer_id",
        None,
    ),
    (
        "customer_id_long",
        {"event": "x", "customer_id": "1" * 65},
        "customer_id",
        "invalid_customer_id",
        None,
    ),
    (
        "customer_id_bool",
        {"event": "x", "customer_id": False},
        "customer_id",
        "invalid_customer_id",
        None,
    ),
    (
        "customer_id_dict",
        {"event": "x", "customer_id": {}},
        "customer_id",
        "invalid_customer_id",
        None,
    ),
    ("email_bad", {"event": "x", "email": "nobody"}, "email", "invalid_email", None),
    ("email_no_tld", {"event": "x", "email": "a@b"}, "email", "invalid_email", None),
    ("device_id_space", {"event": "x", "device_id": "a b"}, "device_id", "invalid_device_id", None),
    (
        "device_id_256",
        {"event": "x", "device_id": "d" * 256},
        "device_id",
        "invalid_device_id",
        None,
    ),
    (
        "device_id_nil",
        {"event": "x", "device_id": "00000000-0000-0000-0000-000000000000"},
        "device_id",
        "invalid_device_id",
        None,
    ),
    (
        "device_id_control",
        {"event": "x", "device_id": "ab\x00cd"},
        "device_id",
        "invalid_device_id",
        None,
    ),
    (
        "event_uuid_bad",
        {"event": "x", "cookie": "k", "event_uuid": "nope"},
        "event_uuid",
        "invalid_event_attributes",
        None,
    ),
    (
        "timestamp_bad",
        {"event": "x", "cookie": "k", "timestamp": "soon"},
        "timestamp",
        "invalid_event_attributes",
        None,
    ),
    (
        "script",
        {"event": "x", "cookie": "k", "bio": "<script>"},
        "bio",
        "invalid_event_attributes",
        None,
    ),
    (
        "script_spaced",
        {"event": "x", "cookie": "k", "bio": "< SCRIPT>"},
        "bio",
        "invalid_event_attributes",
        None,
    ),
    (
        "script_deep",
        {"event": "x", "cookie": "k", "meta": {"a": [{"b": "<script src=x>"}]}},
        "meta",
        "invalid_event_attributes",
        None,
    ),
    (
        "long_name",
        {"event": "x", "cookie": "k", "n" * 101: 1},
        "n" * 101,
        "invalid_event_attributes",
        None,
    ),
    (
        "subscription_groups_shape",
        {"event": "x", "cookie": "k", "subscription_groups": [{"id": "a", "subscribed": "no"}]},
        "subscription_groups",
        "invalid_user_attributes",
        None,
    ),
    (
        "subscription_groups_not_array",
        {"event": "x", "cookie": "k", "subscription_groups": {"id": "a", "subscribed": True}},
        "subscription_groups",
        "invalid_user_attributes",
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "error_type", "messages"), [pytest.param(*r[1:], id=r[0]) for r in RULES]
)
def test_each_rule(body, field, error_type, messages):
    error = rejected(body)
    assert error.error_type == error_type
    assert error.error_type in ERROR_TYPES
    assert list(error.errors) == [field]
    assert error.errors[field] and all(isinstance(m, str) and m for m in error.errors[field])
    if messages is not None:
        assert error.errors[field] == messages


def test_every_broken_rule_is_named_and_the_first_sets_the_type():
    error = rejected({"event": "", "email": "bad", "device_id": "a b", "timestamp": "x"})
    assert error.error_type == "event_name_missing"
    assert set(error.errors) == {"event", "email", "device_id", "timestamp"}


@pytest.mark.parametrize(
    "device_id",
    [
        "8abe3faa-d48d-4e4a-00ca-beae01f1c987",
        "a1b2c3d4e5f60718",
        "FID:com.example.app",
        "x" * 255,
    ],
)
def test_device_ids_of_real_sdks(device_id):
    assert ok(event="app_open", device_id=device_id).device_id == device_id


@pytest.mark.parametrize(
    "identifier",
    [
        {"customer_id": "c"},
        {"retailer_customer_id": "c"},
        {"email": "a@example.com"},
        {"device_id": "a1b2c3d4e5f60718"},
        {"cookie": "k"},
    ],
    ids=lambda i: next(iter(i)),
)
def test_one_identifier_is_enough(identifier):
    ok(event="view", **identifier)


@pytest.mark.parametrize(("sent", "stored"), [(812123, "812123"), (12.0, "12"), (" 77 ", "77")])
def test_customer_id_is_stored_as_a_string(sent, stored):
    event = ok(event="identify", customer_id=sent)
    assert event.customer_id == stored
    assert event.body["customer_id"] == stored


def test_empty_identifiers_are_absent():
    event = ok(event="app_open", device_id="", cookie="ck", email="", customer_id=None)
    assert event.device_id is None and event.email is None and event.customer_id is None
    assert event.cookie == "ck"
    for name in ("device_id", "email", "customer_id"):
        assert event.body.get(name) in (None, "")


def test_email_is_normalised_for_lookups_but_kept_as_sent():
    event = ok(event="identify", email="Jane.Doe@Example.COM")
    assert event.email == "jane.doe@example.com"
    assert event.body["email"] == "Jane.Doe@Example.COM"


@pytest.mark.parametrize(
    ("latitude", "longitude"), [("37.77", "-122.41"), (37.77, -122.41), (0, 0), ("", None)]
)
def test_coordinates(latitude, longitude):
    event = ok(event="view", cookie="k", latitude=latitude, longitude=longitude)
    assert event.body["latitude"] == latitude
    assert event.body["longitude"] == longitude


@pytest.mark.parametrize(("latitude", "longitude"), [("north", 0), (91, 0), (0, 181), (True, 0)])
def test_impossible_coordinates_are_rejected(latitude, longitude):
    error = rejected({"event": "view", "cookie": "k", "latitude": latitude, "longitude": longitude})
    assert error.error_type == "invalid_event_attributes"


def test_custom_attributes_are_kept_exactly():
    attributes = {
        "s": "héllo ✓ 🎉",
        "i": 2**70,
        "f": 0.1,
        "b": False,
        "n": None,
        "a": [1, [2, [3]], {"x": None}],
        "o": {"k": {"k": "v"}},
        "ключ": "значение",
    }
    body = {"event": "custom", "cookie": "k", **copy.deepcopy(attributes)}
    event = validate_event(body, RECEIVED)
    for name, value in attributes.items():
        assert json.dumps(event.body[name]) == json.dumps(value)


def test_the_sent_body_is_not_changed():
    body = {"event": "view", "customer_id": 5, "device_id": "", "cookie": "k"}
    before = copy.deepcopy(body)
    validate_event(body, RECEIVED)
    assert body == before


def test_event_uuid_generated_when_absent_or_empty():
    events = [ok(event="view", cookie="k") for _ in range(500)]
    events.append(ok(event="view", cookie="k", event_uuid=""))
    events.append(ok(event="view", cookie="k", event_uuid=None))
    uuids = [e.event_uuid for e in events]
    assert len(set(uuids)) == len(uuids)
    for value in uuids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize("version", [1, 3, 4, 5])
def test_sent_event_uuid_of_any_version_is_kept(version):
    value = {
        1: uuid.uuid1(),
        3: uuid.uuid3(uuid.NAMESPACE_DNS, "x"),
        4: uuid.uuid4(),
        5: uuid.uuid5(uuid.NAMESPACE_DNS, "x"),
    }[version]
    assert ok(event="view", cookie="k", event_uuid=str(value)).event_uuid == str(value)


def test_sent_event_uuid_is_normalised_to_lower_case():
    value = str(uuid.uuid4())
    assert ok(event="view", cookie="k", event_uuid=value.upper()).event_uuid == value


def test_timestamp_defaults_to_receipt_time():
    event = ok(event="view", cookie="k")
    assert event.timestamp_ms == RECEIVED
    assert event.timestamp == format_ms(RECEIVED)
    assert event.body["timestamp"] == format_ms(RECEIVED)


def test_sent_timestamp_is_normalised():
    event = ok(event="view", cookie="k", timestamp="2021-06-24T10:23:54+05:30")
    assert (event.timestamp, event.timestamp_ms) == ("2021-06-24T04:53:54Z", 1624510434000)
    assert event.body["timestamp"] == "2021-06-24T04:53:54Z"


def test_nesting_limit():
    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = {"d": value}
        return value

    ok(event="view", cookie="k", tree=nested(MAX_NESTING))
    error = rejected({"event": "view", "cookie": "k", "tree": nested(MAX_NESTING + 1)})
    assert list(error.errors) == ["tree"]


def test_attribute_name_of_100_characters_is_fine():
    ok(event="view", cookie="k", **{"n" * 100: 1})


@pytest.mark.parametrize(
    "text", ["a < b", "scripted text", "<3 scripting", "<scr ipt>", "description"]
)
def test_text_that_is_not_a_script_tag(text):
    ok(event="view", cookie="k", note=text)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("identify", True),
        ("e" * 64, True),
        ("1st_purchase", True),
        ("achat_réussi", True),
        ("Add-To-Cart", True),
        ("", False),
        ("e" * 65, False),
        ("a.b", False),
        ("a b", False),
        ("a\nb", False),
        ("a\u00a0b", False),
        ("123", False),
        ("-1.5", False),
        ("1e5", False),
        (123, False),
        (None, False),
        (["x"], False),
    ],
)
def test_is_valid_event_name(name, valid):
    assert is_valid_event_name(name) is valid


@pytest.mark.parametrize(
    "name",
    [
        "identify",
        "view",
        "add_to_cart",
        "remove_from_cart",
        "checkout",
        "purchase",
        "search",
        "subscription_update",
    ],
)
def test_standard_event_types(name):
    assert event_type(name) == "standard"
    assert ok(event=name, cookie="k").event_type == "standard"


@pytest.mark.parametrize("name", ["newsletter_signup", "Purchase_completed", "viewed"])
def test_custom_event_types(name):
    assert event_type(name) == "custom_event"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"a": 1} {"b": 2}',
        b'{"a": "\xff"}',
        b'{"a": "\\ud800"}',
        b"{'a': 1}",
        b'{"a": NaN}',
    ],
)
def test_bodies_that_are_not_json(raw):
    with pytest.raises(EventRejected) as info:
        parse_json_object(raw)
    assert info.value.error_type == "parsing_error"
    assert info.value.errors == {"body": ["is not valid JSON"]}


@pytest.mark.parametrize("raw", [b"[]", b'[{"event": "x"}]', b'"text"', b"null", b"1", b"true"])
def test_json_that_is_not_an_object_says_so(raw):
    with pytest.raises(EventRejected) as info:
        parse_json_object(raw)
    assert info.value.error_type == "parsing_error"
    assert info.value.errors == {"body": ["must be a JSON object"]}


def test_decode_event_body_goes_from_bytes_to_an_event():
    raw = json.dumps({"event": "view", "cookie": "k", "ü": "✓"}, ensure_ascii=False).encode()
    event = decode_event_body(raw, RECEIVED)
    assert event.body["ü"] == "✓"
    with pytest.raises(EventRejected) as info:
        decode_event_body(b'{"event": "view"}', RECEIVED)
    assert info.value.error_type == "missing_identifier"


# -- fields Trackway reads or fills: typed by rule, never by first use -----------------------

STRING_FIELDS = [
    "device_type",
    "device_token",
    "device_idfa",
    "device_idfv",
    "device_manufacturer",
    "os_name",
    "network_carrier",
    "ip",
    "user_agent",
    "referrer",
    "url",
    "site",
    "session_uuid",
    "_bsft_doc_type",
    "_bsft_ts",
    "santized_at",
    "account_uuid",
    "user_uuid",
    "browser_platform",
    "browser_type",
    "browser_version",
    "verification_key",
    "event_signature",
]
RULE_TYPED = [
    *STRING_FIELDS,
    "event",
    "event_uuid",
    "timestamp",
    "sent_at",
    "customer_id",
    "retailer_customer_id",
    "email",
    "email_hash",
    "device_id",
    "cookie",
    "subscription_groups",
    "latitude",
    "longitude",
    "timestamp_epoch",
    "_bsft_type",
]


@pytest.mark.parametrize("name", STRING_FIELDS)
@pytest.mark.parametrize("value", [123, 1.5, True, {"a": 1}, ["a"]], ids=repr)
def test_fields_trackway_reads_or_fills_must_be_strings(name, value):
    error = rejected({"event": "view", "cookie": "k", name: value})
    assert error.error_type == "invalid_event_attributes"
    assert error.errors == {name: ["must be a string"]}


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_those_fields_take_a_string_or_null(name):
    value = "2024-01-01T00:00:00Z" if name in ("_bsft_ts", "santized_at") else "text"
    assert ok(event="view", cookie="k", **{name: value}).body[name] == value
    assert ok(event="view", cookie="k", **{name: None}).body[name] is None


@pytest.mark.parametrize("value", ["1700000000", True, {}, []], ids=repr)
def test_timestamp_epoch_must_be_a_number(value):
    error = rejected({"event": "view", "cookie": "k", "timestamp_epoch": value})
    assert (error.error_type, error.errors) == (
        "invalid_event_attributes",
        {"timestamp_epoch": ["must be a number"]},
    )
    ok(event="view", cookie="k", timestamp_epoch=1700000000)


@pytest.mark.parametrize("value", ["events", 1, ["events"]], ids=repr)
def test_bsft_type_must_be_an_object(value):
    error = rejected({"event": "view", "cookie": "k", "_bsft_type": value})
    assert (error.error_type, error.errors) == (
        "invalid_event_attributes",
        {"_bsft_type": ["must be a JSON object"]},
    )
    ok(event="view", cookie="k", _bsft_type={"name": "events"})


@pytest.mark.parametrize("value", [{}, [], True], ids=repr)
def test_retailer_customer_id_beside_customer_id_is_typed_too(value):
    error = rejected({"event": "view", "customer_id": "c", "retailer_customer_id": value})
    assert (error.error_type, error.errors) == (
        "invalid_customer_id",
        {"retailer_customer_id": ["must be a string or a number"]},
    )
    event = ok(event="view", customer_id="c", retailer_customer_id=7)
    assert (event.customer_id, event.body["retailer_customer_id"]) == ("c", 7)


def test_verification_fields_are_strings_when_verification_is_off():
    error = rejected({"event": "view", "cookie": "k", "verification_key": 5})
    assert error.errors == {"verification_key": ["must be a string"]}
    # On, the signature rule alone names them (one message, its own error type).
    with pytest.raises(EventRejected) as info:
        validate_event({"event": "view", "cookie": "k", "verification_key": 5}, RECEIVED, "s")
    assert info.value.error_type == "event_verification_error"
    assert info.value.errors["verification_key"] == ["can't be blank"]


@pytest.mark.parametrize("value", ["garbage", True, {}, -5, "2024-13-01T00:00:00Z"], ids=repr)
def test_sent_at_is_checked_without_a_timestamp(value):
    error = rejected({"event": "view", "cookie": "k", "sent_at": value})
    assert error.error_type == "invalid_event_attributes"
    assert error.errors == {"sent_at": ["is not a valid ISO 8601 timestamp or Unix time"]}


def test_sent_at_is_checked_with_a_timestamp_and_with_a_bad_one():
    error = rejected({"event": "view", "cookie": "k", "timestamp": 1, "sent_at": "x"})
    assert error.errors == {"sent_at": ["is not a valid ISO 8601 timestamp or Unix time"]}
    error = rejected({"event": "view", "cookie": "k", "timestamp": "x", "sent_at": "y"})
    assert list(error.errors) == ["timestamp", "sent_at"]
    # Import keeps timestamps as given, and still checks sent_at.
    with pytest.raises(EventRejected):
        validate_event(
            {"event": "view", "cookie": "k", "timestamp": 1, "sent_at": "x"},
            RECEIVED,
            correct_clock_skew=False,
        )


def test_a_valid_sent_at_alone_leaves_the_receipt_time():
    event = ok(event="view", cookie="k", sent_at="2001-01-01T00:00:00Z")
    assert event.timestamp_ms == RECEIVED
    assert event.body["sent_at"] == "2001-01-01T00:00:00Z"


@pytest.mark.parametrize("name", RULE_TYPED)
def test_rule_typed_fields_never_enter_the_attribute_type_registry(name):
    assert custom_attribute_types({name: "x"}) == []
    assert custom_attribute_types({"custom": "x", name: 1}) == [("custom", "string")]


# -- timestamps in the future -----------------------------------------------------------------

HOUR = 3_600_000
FUTURE = ["must not be more than 24 hours in the future"]


def test_a_timestamp_up_to_24_hours_ahead_is_kept():
    event = ok(event="view", cookie="k", timestamp=format_ms(RECEIVED + 24 * HOUR))
    assert event.timestamp_ms == RECEIVED + 24 * HOUR


@pytest.mark.parametrize(
    "timestamp",
    [format_ms(RECEIVED + 24 * HOUR + 1), "2099-01-01T00:00:00Z", "9999-12-31T23:59:59Z"],
)
def test_a_timestamp_more_than_24_hours_ahead_is_refused(timestamp):
    error = rejected({"event": "view", "cookie": "k", "timestamp": timestamp})
    assert (error.error_type, error.errors) == ("invalid_event_attributes", {"timestamp": FUTURE})


def test_unix_seconds_ahead_are_refused_too():
    error = rejected({"event": "view", "cookie": "k", "timestamp": RECEIVED // 1000 + 2 * 86400})
    assert error.errors == {"timestamp": FUTURE}


def test_the_bound_applies_after_clock_skew_correction():
    # A device whose clock is 30 years ahead: its timestamp comes back to about now.
    sent = RECEIVED + 30 * 365 * 24 * HOUR
    event = ok(event="view", cookie="k", timestamp=format_ms(sent - 1000), sent_at=format_ms(sent))
    assert event.timestamp_ms == RECEIVED - 1000
    # A device 2 days behind that dates its event now: 2 days ahead once corrected.
    error = rejected(
        {
            "event": "view",
            "cookie": "k",
            "timestamp": format_ms(RECEIVED),
            "sent_at": format_ms(RECEIVED - 48 * HOUR),
        }
    )
    assert error.errors == {"timestamp": FUTURE}


def test_the_bound_is_a_parameter_and_none_turns_it_off():
    body = {"event": "view", "cookie": "k", "timestamp": format_ms(RECEIVED + 2 * HOUR)}
    with pytest.raises(EventRejected) as info:
        validate_event(body, RECEIVED, max_ahead_ms=HOUR)
    assert info.value.errors == {"timestamp": ["must not be more than 1 hour in the future"]}
    with pytest.raises(EventRejected) as info:
        validate_event(body, RECEIVED, max_ahead_ms=90_000)
    assert info.value.errors == {"timestamp": ["must not be more than 90 seconds in the future"]}
    assert validate_event(body, RECEIVED, max_ahead_ms=None).timestamp_ms == RECEIVED + 2 * HOUR


def test_without_the_bound_the_calendar_still_ends_in_9999():
    """A skew correction past year 9999 stays in it (these were 500s)."""
    body = {
        "event": "edge",
        "cookie": "k",
        "timestamp": "9999-12-31T23:59:59Z",
        "sent_at": "1970-01-01T00:00:00Z",
    }
    event = validate_event(body, RECEIVED, max_ahead_ms=None)
    assert event.timestamp == "9999-12-31T23:59:59.999Z"
    assert event.timestamp_ms == 253402300799999
    early = validate_event(
        {**body, "timestamp": "1970-01-01T00:00:00Z", "sent_at": "9999-12-31T23:59:59Z"},
        RECEIVED,
        max_ahead_ms=None,
    )
    assert early.timestamp_ms == 0


def test_import_compares_the_timestamp_as_given_with_its_receipt():
    body = {"event": "view", "cookie": "k", "timestamp": "2099-01-01T00:00:00Z", "sent_at": 1}
    with pytest.raises(EventRejected) as info:
        validate_event(body, RECEIVED, correct_clock_skew=False)
    assert info.value.errors == {"timestamp": FUTURE}
    kept = validate_event(body, RECEIVED, correct_clock_skew=False, max_ahead_ms=None)
    assert kept.timestamp == "2099-01-01T00:00:00Z"


def test_decode_event_body_takes_the_bound():
    raw = json.dumps({"event": "view", "cookie": "k", "timestamp": "2099-01-01T00:00:00Z"})
    with pytest.raises(EventRejected):
        decode_event_body(raw.encode(), RECEIVED)
    assert decode_event_body(raw.encode(), RECEIVED, max_ahead_ms=None).timestamp.startswith("2099")


# -- bounds of what one event may carry ------------------------------------------------------

TOO_MANY = "are too many: {} fields (maximum is {} per event)"


def with_attributes(count: int, **known: Any) -> dict[str, Any]:
    """A body of `count` top-level fields: event, cookie, and custom attributes."""
    body: dict[str, Any] = {"event": "view", "cookie": "k", **known}
    body.update({f"a{i}": i for i in range(count - len(body))})
    assert len(body) == count
    return body


def test_a_body_of_1000_fields_is_accepted_and_1001_refused_naming_the_bound():
    assert validate_event(with_attributes(1000), RECEIVED).body["a997"] == 997
    refused = rejected(with_attributes(1001))
    assert refused.error_type == "invalid_event_attributes"
    assert refused.errors == {"attributes": [TOO_MANY.format(1001, 1000)]}


def test_fifty_thousand_attribute_names_are_refused():
    refused = rejected(with_attributes(50_000))
    assert refused.errors == {"attributes": [TOO_MANY.format(50_000, 1000)]}


def test_the_bound_of_fields_is_a_parameter_on_both_paths():
    body = with_attributes(6)
    assert validate_event(dict(body), RECEIVED, max_attributes=6).event == "view"
    for secret in (None, "s3cret"):  # the fast path, and (verification on) every rule
        with pytest.raises(EventRejected) as info:
            validate_event(dict(body), RECEIVED, secret, max_attributes=5)
        assert info.value.errors["attributes"] == [TOO_MANY.format(6, 5)]
    raw = json.dumps(body).encode()
    with pytest.raises(EventRejected):
        decode_event_body(raw, RECEIVED, max_attributes=5)


def test_the_bound_of_fields_is_named_beside_other_broken_rules():
    refused = rejected({**with_attributes(1001), "email": "not an email"})
    assert refused.error_type == "invalid_email"  # the first broken rule counts
    assert refused.errors["attributes"] == [TOO_MANY.format(1002, 1000)]


def test_a_subscription_group_id_of_255_characters_is_fine_and_256_refused():
    def body(length: int) -> dict[str, Any]:
        groups = [{"id": "g", "subscribed": True}, {"id": "x" * length, "subscribed": False}]
        return {"event": "subscription_update", "cookie": "k", "subscription_groups": groups}

    assert validate_event(body(255), RECEIVED).body["subscription_groups"][1]["id"] == "x" * 255
    refused = rejected(body(256))
    assert refused.error_type == "invalid_event_attributes"
    assert refused.errors == {"subscription_groups": ["id is too long (maximum is 255 characters)"]}
    assert rejected(body(100_000)).errors == refused.errors


def test_only_sent_event_uuids_are_looked_up_among_the_stored_ones() -> None:
    """A uuid made at validation (no event_uuid, or an empty one) is flagged fresh, on both
    paths of the rules and over the writer socket, and the group commit does not look it up;
    a sent one is looked up (that is how a retry is answered as a duplicate)."""
    from trackway.domain.batch import lookups_needed
    from trackway.store.sqlite import wire

    sent = str(uuid.uuid4())
    bodies = [
        {"event": "view", "customer_id": "c1"},
        {"event": "view", "customer_id": "c1", "event_uuid": ""},
        {"event": "view", "customer_id": "c1", "event_uuid": sent.upper()},
        # Not the one-pass path (verification off, but a rule it leaves to the full rules).
        {"event": "view", "customer_id": "c1", "email_hash": "0" * 32},
    ]
    accepted = [validate_event(b, RECEIVED) for b in bodies]
    assert [e.fresh_uuid for e in accepted] == [True, True, False, True]
    job = wire.job_decoder.decode(wire.job_frame(1, 1, accepted, [])[wire.HEADER :])
    assert [e.fresh_uuid for e in wire.accepted_events(job)] == [True, True, False, True]
    assert lookups_needed(accepted).event_uuids == [sent]
