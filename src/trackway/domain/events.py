"""The request body of an event and the rules it must pass.

`decode_event_body` turns raw bytes into an `AcceptedEvent` or raises `EventRejected` naming
every bad field and the one error type the rejection is counted under.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import re
import time
from typing import Any

import msgspec

from trackway.domain.errors import EventRejected
from trackway.domain.timestamps import format_ms, parse_timestamp

# The sixteen error types of the summary page, in the order they are reported.
ERROR_TYPES: tuple[str, ...] = (
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
)

STANDARD_EVENTS = frozenset(
    {
        "identify",
        "view",
        "add_to_cart",
        "remove_from_cart",
        "add_to_wishlist",
        "remove_from_wishlist",
        "checkout",
        "purchase",
        "search",
        "subscription_update",
        "pageload",
        "click",
        "app_install",
        "app_open",
        "unsubscribe",
    }
)

MAX_EVENT_NAME = 64
MAX_CUSTOMER_ID = 64
MAX_DEVICE_ID = 255
MAX_IDENTIFIER = 255
MAX_EMAIL = 254
MAX_ATTRIBUTE_NAME = 100
MAX_NESTING = 32
MAX_SUBSCRIPTION_GROUP_ID = 255
# Top-level fields one event may carry, the known ones included (a setting:
# --max-event-attributes): each new custom name fixes a type for its account.
MAX_EVENT_ATTRIBUTES = 1000
_LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

BLANK = "can't be blank"
NUL_MESSAGE = "must not contain NUL characters (\\u0000)"
NOT_VALID = "is not valid"
NO_IDENTIFIER = "customer_id, email, device_id or cookie must be present"

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Plausible, not RFC 5322: one @, a dot in the domain, no spaces or control characters.
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+")
_EMAIL_HASH_RE = re.compile(r"[0-9a-fA-F]{32}")
_NUMERIC_RE = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?")
_SCRIPT_RE = re.compile(r"<\s*script", re.IGNORECASE)
_SPACE_OR_CONTROL_RE = re.compile(r"[\s\x00-\x1f\x7f]")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"

# How far after its receipt an event's timestamp may be, after clock-skew correction (a
# setting: --max-future-hours).
MAX_AHEAD_MS = 24 * 3_600_000
NOT_A_TIMESTAMP = "is not a valid ISO 8601 timestamp or Unix time"
NOT_AN_OBJECT = "must be a JSON object"

# Fields Trackway reads or fills whose value must be a string when present (null: absent).
_STRING_FIELDS = (
    # The seed's body fields.
    "device_type",
    "device_token",
    "device_idfa",
    "device_idfv",
    "device_manufacturer",
    "os_name",
    "network_carrier",
    "ip",
    # The request's context: the pixel and trackway.js fill these, the timeline parses
    # user_agent into the browser fields and shows the others.
    "user_agent",
    "referrer",
    "url",
    "site",
    "session_uuid",
    # What a read adds to a stored event (show_events, history): one sent is kept, the read
    # shows Trackway's.
    "_bsft_doc_type",
    "_bsft_ts",
    "santized_at",
    "account_uuid",
    "user_uuid",
    "browser_platform",
    "browser_type",
    "browser_version",
)
# Read fields of other types, with the rule's message.
_NUMBER_FIELDS = ("timestamp_epoch",)
_OBJECT_FIELDS = ("_bsft_type",)
# Checked by the signature rule when verification is on; strings when present otherwise.
_UNVERIFIED_STRINGS = (*_STRING_FIELDS, "verification_key", "event_signature")


class AcceptedEvent(msgspec.Struct):
    """An event that passed every rule, normalised as it will be stored. A msgspec Struct:
    made in a third of a dataclass's time (one per event), and encodable as it is."""

    event_uuid: str
    event: str
    timestamp: str
    timestamp_ms: int
    received_ms: int
    customer_id: str | None
    email: str | None
    email_hash: str | None
    device_id: str | None
    cookie: str | None
    body: dict[str, Any]
    # (name, type) of each custom attribute, in body order, when validation typed them
    # already (None: type them from the body: custom_attribute_types).
    attribute_types: list[tuple[str, str]] | None = None
    # The body as the store keeps it (JSON), when encoded already: by the API worker that
    # handed the event to SQLite's writer process (store/sqlite/wire.py).
    stored: bytes | None = None
    # The event_uuid was made here (new_event_uuid), not sent: no store can hold it yet, so
    # the group commit does not look it up among the stored ones.
    fresh_uuid: bool = False

    @property
    def event_type(self) -> str:
        return event_type(self.event)


def event_type(name: str) -> str:
    return "standard" if name in STANDARD_EVENTS else "custom_event"


encode_json = msgspec.json.Encoder().encode


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object, or raise parsing_error."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        raise EventRejected("parsing_error", {"body": ["is not valid JSON"]}) from None
    if not isinstance(value, dict):
        raise EventRejected("parsing_error", {"body": [NOT_AN_OBJECT]})
    # JSON text can only carry NUL as the escape \u0000: look further only when it is there.
    if b"\\u0000" in raw and holds_nul(value):
        raise EventRejected("parsing_error", {"body": [NUL_MESSAGE]})
    return value


def holds_nul(value: Any) -> bool:
    """Whether a NUL character is in any string or key of a decoded JSON value: PostgreSQL
    cannot store one, so no backend takes one."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if any("\x00" in key for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def decode_event_body(
    raw: bytes,
    received_ms: int,
    verification_secret: str | None = None,
    *,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> AcceptedEvent:
    return validate_event(
        parse_json_object(raw),
        received_ms,
        verification_secret,
        max_ahead_ms=max_ahead_ms,
        max_attributes=max_attributes,
    )


def event_signature(verification_key: str, secret: str) -> str:
    """The signature a verified event carries: hex SHA-256 of verification_key + secret."""
    return hashlib.sha256((verification_key + secret).encode("utf-8", "surrogatepass")).hexdigest()


# -- the common case, fast --------------------------------------------------------------------
#
# Most events are plain: an event name, an identifier or two, scalar attributes. For those,
# _accept_common reaches the same AcceptedEvent as the rules one by one (_check_every_rule) in a
# single pass over the body, and types each custom attribute on the way. Anything it does not
# handle, and every event that breaks a rule, goes to _check_every_rule, which alone writes the
# messages; tests/unit/test_fast_validation.py holds the two to the same answers.

# Seed fields whose only rule is "a string when present" (null: absent).
_PLAIN_STRINGS = frozenset(_UNVERIFIED_STRINGS)
# Fields the fast path reads below; any other typed field sends the event to the full rules.
_FAST_FIELDS = frozenset(
    {"event", "customer_id", "email", "device_id", "cookie", "event_uuid", "timestamp", "sent_at"}
)
# Event names seen valid (names repeat: the regexes run once per name and process).
_VALID_NAMES: set[str] = set()
_MAX_VALID_NAMES = 10_000


def _accept_common(
    body: dict[str, Any],
    received_ms: int,
    correct_clock_skew: bool,
    max_ahead_ms: int | None,
    max_attributes: int,
) -> AcceptedEvent | None:
    if len(body) > max_attributes:
        return None
    types: list[tuple[str, str]] = []
    for name, value in body.items():
        if name in _TYPED_FIELDS:
            if type(value) is str:
                if "<" in value and _SCRIPT_RE.search(value):
                    return None
                if name in _PLAIN_STRINGS:
                    continue
            elif value is not None and name in _PLAIN_STRINGS:
                return None
            if name not in _FAST_FIELDS and name not in _PLAIN_STRINGS:
                return None
            continue
        if len(name) > MAX_ATTRIBUTE_NAME:
            return None
        kind = type(value)
        if kind is str:
            if "<" in value and _SCRIPT_RE.search(value):
                return None
            if len(value) >= 16 and value[:4].isdigit() and parse_timestamp(value) is not None:
                types.append((name, "timestamp"))
            else:
                types.append((name, "string"))
        elif kind is int or kind is float:
            types.append((name, "number"))
        elif kind is bool:
            types.append((name, "boolean"))
        elif kind is dict:
            if not _nested_ok(value):
                return None
            types.append((name, "object"))
        elif kind is list:
            if not _nested_ok(value):
                return None
            types.append((name, "array"))
        elif value is not None:
            return None

    event = body.get("event")
    if type(event) is not str:
        return None
    if event not in _VALID_NAMES:
        if not event.strip() or not is_valid_event_name(event):
            return None
        if len(_VALID_NAMES) >= _MAX_VALID_NAMES:
            _VALID_NAMES.clear()
        _VALID_NAMES.add(event)

    # Identifiers: present and well formed, or absent (a blank or null one: the full rules).
    # `in` first: most bodies carry one or two of them.
    customer_id = email = device_id = cookie = None
    if "customer_id" in body:
        customer_id = body["customer_id"]
        kind = type(customer_id)
        if kind is str:
            customer_id = customer_id.strip()
            if not customer_id:
                return None
        elif kind is int:
            customer_id = str(customer_id)
        else:
            return None
        if customer_id == "0" or len(customer_id) > MAX_CUSTOMER_ID:
            return None
    if "email" in body:
        email = body["email"]
        if type(email) is not str or len(email) > MAX_EMAIL or not _EMAIL_RE.fullmatch(email):
            return None
        email = email.strip().lower()
    if "device_id" in body:
        device_id = body["device_id"]
        if (
            type(device_id) is not str
            or not device_id
            or len(device_id) > MAX_DEVICE_ID
            or _SPACE_OR_CONTROL_RE.search(device_id)
            or device_id == _NIL_UUID
        ):
            return None
    if "cookie" in body:
        cookie = body["cookie"]
        kind = type(cookie)
        if kind is int:
            cookie = str(cookie)
        elif kind is not str:
            return None
        if not cookie or len(cookie) > MAX_IDENTIFIER or _SPACE_OR_CONTROL_RE.search(cookie):
            return None
    if customer_id is None and email is None and device_id is None and cookie is None:
        return None

    event_uuid = body.get("event_uuid") if "event_uuid" in body else None
    fresh = event_uuid is None or event_uuid == ""
    if fresh:
        event_uuid = new_event_uuid(received_ms)
    elif type(event_uuid) is str and _UUID_RE.fullmatch(event_uuid):
        event_uuid = event_uuid.lower()
    else:
        return None

    sent = None
    if "sent_at" in body:
        sent_at = body["sent_at"]
        if sent_at is not None and sent_at != "":
            sent = parse_timestamp(sent_at)
            if sent is None:
                return None
    raw_timestamp = body.get("timestamp") if "timestamp" in body else None
    if raw_timestamp is None or raw_timestamp == "":
        timestamp, timestamp_ms = format_ms(received_ms), received_ms
    else:
        parsed = parse_timestamp(raw_timestamp)
        if parsed is None:
            return None
        timestamp, timestamp_ms = parsed
        if sent is not None and correct_clock_skew:
            timestamp, timestamp_ms = _correct_clock_skew(
                sent[1], timestamp, timestamp_ms, received_ms
            )
        if max_ahead_ms is not None and timestamp_ms > received_ms + max_ahead_ms:
            return None

    stored = dict(body)
    stored["event_uuid"] = event_uuid
    stored["timestamp"] = timestamp
    if customer_id is not None:
        stored["customer_id"] = customer_id
    if cookie is not None:
        stored["cookie"] = cookie
    return AcceptedEvent(
        event_uuid, event, timestamp, timestamp_ms, received_ms, customer_id, email, None,
        device_id, cookie, stored, types, None, fresh,
    )  # fmt: skip


_ABSENT: Any = object()


def _nested_ok(value: dict[str, Any] | list[Any]) -> bool:
    """What _check_attributes asks of a nested value: at most MAX_NESTING deep, no <script in
    any key or string."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            return False
        if isinstance(item, dict):
            if any("<" in key and _SCRIPT_RE.search(key) for key in item):
                return False
            children: Any = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, str):
                if "<" in child and _SCRIPT_RE.search(child):
                    return False
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return True


def validate_event(
    body: dict[str, Any],
    received_ms: int,
    verification_secret: str | None = None,
    *,
    correct_clock_skew: bool = True,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> AcceptedEvent:
    """Check every rule; collect all field errors, count the first broken rule's type.
    `correct_clock_skew=False` (import of history: the event was sent long before we read
    it) keeps the timestamp as given even when the event carries `sent_at`. A timestamp more
    than `max_ahead_ms` after `received_ms` (after the correction) is refused; None: no bound.
    A body of more than `max_attributes` top-level fields is refused."""
    if verification_secret is None:
        accepted = _accept_common(
            body, received_ms, correct_clock_skew, max_ahead_ms, max_attributes
        )
        if accepted is not None:
            return accepted
    return _check_every_rule(
        body, received_ms, verification_secret, correct_clock_skew, max_ahead_ms, max_attributes
    )


def _check_every_rule(
    body: dict[str, Any],
    received_ms: int,
    verification_secret: str | None,
    correct_clock_skew: bool,
    max_ahead_ms: int | None,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> AcceptedEvent:
    """The rules, one by one, with every message: the reference that _accept_common must
    agree with, and the path of every event it does not take."""
    errors: dict[str, list[str]] = {}
    types: list[str] = []

    def reject(field: str, message: str, error_type: str) -> None:
        errors.setdefault(field, []).append(message)
        types.append(error_type)

    if verification_secret is not None:
        _check_signature(body, verification_secret, reject)

    event = body.get("event")
    if event is None or (isinstance(event, str) and not event.strip()):
        reject("event", BLANK, "event_name_missing")
    elif not is_valid_event_name(event):
        reject("event", NOT_VALID, "invalid_event_attributes")

    customer_id = _identifier(body, "customer_id")
    if customer_id is None:
        customer_id = _identifier(body, "retailer_customer_id")
        cid_field = "retailer_customer_id"
    else:
        cid_field = "customer_id"
        # The alias, sent beside customer_id, is kept as sent: of the same types.
        alias = _identifier(body, "retailer_customer_id")
        if alias is not None and (
            isinstance(alias, bool) or not isinstance(alias, str | int | float)
        ):
            reject("retailer_customer_id", "must be a string or a number", "invalid_customer_id")
    email = _identifier(body, "email")
    email_hash = _identifier(body, "email_hash")
    device_id = _identifier(body, "device_id")
    cookie = _identifier(body, "cookie")

    if (
        customer_id is None
        and email is None
        and email_hash is None
        and device_id is None
        and (cookie is None)
    ):
        reject("base", NO_IDENTIFIER, "missing_identifier")

    if customer_id is not None:
        if isinstance(customer_id, bool) or not isinstance(customer_id, str | int | float):
            reject(cid_field, "must be a string or a number", "invalid_customer_id")
            customer_id = None
        else:
            customer_id = _number_to_string(customer_id)
            if customer_id == "0":
                reject(cid_field, "must not be 0", "invalid_customer_id")
            elif len(customer_id) > MAX_CUSTOMER_ID:
                reject(
                    cid_field,
                    f"is too long (maximum is {MAX_CUSTOMER_ID} characters)",
                    "invalid_customer_id",
                )

    if email is not None:
        if not isinstance(email, str) or len(email) > MAX_EMAIL or not _EMAIL_RE.fullmatch(email):
            reject("email", NOT_VALID, "invalid_email")
        else:
            email = email.strip().lower()

    if device_id is not None:
        if not isinstance(device_id, str):
            reject("device_id", "must be a string", "invalid_device_id")
        elif len(device_id) > MAX_DEVICE_ID:
            reject(
                "device_id",
                f"is too long (maximum is {MAX_DEVICE_ID} characters)",
                "invalid_device_id",
            )
        elif _SPACE_OR_CONTROL_RE.search(device_id) or device_id == _NIL_UUID:
            reject("device_id", NOT_VALID, "invalid_device_id")

    if cookie is not None:
        if isinstance(cookie, bool) or not isinstance(cookie, str | int):
            reject("cookie", "must be a string", "invalid_event_attributes")
        else:
            cookie = str(cookie)
            if len(cookie) > MAX_IDENTIFIER or _SPACE_OR_CONTROL_RE.search(cookie):
                reject("cookie", NOT_VALID, "invalid_event_attributes")

    if email_hash is not None and (
        not isinstance(email_hash, str) or not _EMAIL_HASH_RE.fullmatch(email_hash)
    ):
        reject("email_hash", "must be 32 hexadecimal characters (md5)", "invalid_event_attributes")
    elif email_hash is not None:
        email_hash = email_hash.lower()

    event_uuid = body.get("event_uuid")
    fresh = event_uuid is None or event_uuid == ""
    if fresh:
        event_uuid = new_event_uuid()
    elif not isinstance(event_uuid, str) or not _UUID_RE.fullmatch(event_uuid):
        reject("event_uuid", "is not a valid UUID", "invalid_event_attributes")
    else:
        event_uuid = event_uuid.lower()

    raw_timestamp = body.get("timestamp")
    given = raw_timestamp is not None and raw_timestamp != ""
    parsed = parse_timestamp(raw_timestamp) if given else None
    if given and parsed is None:
        reject("timestamp", NOT_A_TIMESTAMP, "invalid_event_attributes")
    # sent_at is checked whether or not a timestamp came with it.
    sent_at = body.get("sent_at")
    sent = parse_timestamp(sent_at) if sent_at is not None and sent_at != "" else None
    if sent is None and sent_at is not None and sent_at != "":
        reject("sent_at", NOT_A_TIMESTAMP, "invalid_event_attributes")
    if parsed is None:
        timestamp, timestamp_ms = format_ms(received_ms), received_ms
    else:
        timestamp, timestamp_ms = parsed
        if sent is not None and correct_clock_skew:
            timestamp, timestamp_ms = _correct_clock_skew(
                sent[1], timestamp, timestamp_ms, received_ms
            )
        if max_ahead_ms is not None and timestamp_ms > received_ms + max_ahead_ms:
            reject("timestamp", _too_far_ahead(max_ahead_ms), "invalid_event_attributes")

    string_fields = _STRING_FIELDS if verification_secret is not None else _UNVERIFIED_STRINGS
    for name in string_fields:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            reject(name, "must be a string", "invalid_event_attributes")
    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            reject(name, "must be a number", "invalid_event_attributes")
    for name in _OBJECT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            reject(name, NOT_AN_OBJECT, "invalid_event_attributes")

    for name in ("latitude", "longitude"):
        value = body.get(name)
        if value is not None and value != "" and not _is_coordinate(value, name):
            reject(name, NOT_VALID, "invalid_event_attributes")

    _check_subscription_groups(body.get("subscription_groups"), reject)
    if len(body) > max_attributes:
        reject("attributes", too_many_attributes(len(body), max_attributes),
               "invalid_event_attributes")  # fmt: skip
    _check_attributes(body, reject)

    if errors:
        raise EventRejected(types[0], errors)

    stored = dict(body)
    stored["event_uuid"] = event_uuid
    stored["timestamp"] = timestamp
    if customer_id is not None:
        stored["customer_id"] = customer_id
    # Identifiers sent empty count as absent, and are not kept as empty values.
    for name in (
        "customer_id",
        "retailer_customer_id",
        "email",
        "email_hash",
        "device_id",
        "cookie",
    ):
        if name in stored and _blank(stored[name]):
            del stored[name]
    if cookie is not None:
        stored["cookie"] = cookie
    assert isinstance(event, str)  # is_valid_event_name passed
    assert isinstance(event_uuid, str)  # made, or a valid UUID
    return AcceptedEvent(
        event_uuid=event_uuid,
        event=event,
        timestamp=timestamp,
        timestamp_ms=timestamp_ms,
        received_ms=received_ms,
        customer_id=customer_id,
        email=email,
        email_hash=email_hash,
        device_id=device_id,
        cookie=cookie,
        body=stored,
        fresh_uuid=fresh,
    )


# Fields of the seed and identifiers: typed by the rules above, not by first use.
_TYPED_FIELDS = frozenset(
    {
        "event",
        "event_uuid",
        "timestamp",
        "customer_id",
        "retailer_customer_id",
        "email",
        "email_hash",
        "device_id",
        "cookie",
        "subscription_groups",
        "latitude",
        "longitude",
        "verification_key",
        "event_signature",
        "sent_at",
        *_STRING_FIELDS,
        *_NUMBER_FIELDS,
        *_OBJECT_FIELDS,
    }
)


# What a custom attribute's first value can fix its name as.
ATTRIBUTE_TYPES = ("string", "timestamp", "number", "boolean", "object", "array")


def attribute_type(value: Any) -> str | None:
    """The type a custom attribute's value fixes for its name: string, timestamp, number,
    boolean, object or array (None for null, which fixes nothing)."""
    if isinstance(value, str):
        if len(value) >= 16 and value[:4].isdigit() and parse_timestamp(value) is not None:
            return "timestamp"
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return None


def custom_attribute_types(body: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for name, value in body.items():
        if name not in _TYPED_FIELDS:
            kind = attribute_type(value)
            if kind is not None:
                found.append((name, kind))
    return found


def type_mismatch(name: str, expected: str, got: str) -> EventRejected:
    return EventRejected("es_index_error", {name: [f"must be of type {expected} (got {got})"]})


class Uuid7:
    """Time-ordered UUIDs (version 7, RFC 9562): 48 bits of Unix milliseconds, a 12-bit
    counter within the millisecond (RFC 9562 §6.2, method 1), then 62 random bits drawn anew
    every millisecond. Ordered by time, new uuids land on the same index pages, so a group
    commit writes few pages. They name events and guard nothing, so a fast, per-process seeded
    generator will do; the text of a millisecond is made once (one uuid costs a clock read and
    a string concatenation). One generator per thread: its state is not locked."""

    def __init__(self) -> None:
        self._random = random.Random()
        self._ms = -1
        self._seq = 0
        self._head = self._tail = ""
        # A forked worker must not repeat its parent's uuids (a repeat is dropped as a
        # duplicate): it draws new random bits before its first one.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._random.seed()
        self._ms = -1

    def __call__(self, ms: int | None = None) -> str:
        """A new uuid, of the time `ms` (epoch milliseconds; default now)."""
        if ms is None:
            ms = time.time_ns() // 1_000_000
        if ms > self._ms:
            self._start(ms)
        else:
            self._seq += 1
            if self._seq > 0xFFF:
                # 4,096 in one millisecond (or the clock went back): borrow the next one.
                self._start(self._ms + 1)
        return self._head + _HEX3[self._seq] + self._tail

    def _start(self, ms: int) -> None:
        bits = self._random.getrandbits(62)
        self._ms, self._seq = ms, 0
        self._head = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
        self._tail = f"-{0x8000 | bits >> 48:04x}-{bits & 0xFFFFFFFFFFFF:012x}"


_HEX3 = [f"{n:03x}" for n in range(0x1000)]

# The event uuids that validation makes (on the event loop's thread).
new_event_uuid = Uuid7()


def _too_far_ahead(max_ahead_ms: int) -> str:
    hours, rest = divmod(max_ahead_ms, 3_600_000)
    if rest:
        bound = f"{max_ahead_ms / 1000:g} seconds"
    else:
        bound = "1 hour" if hours == 1 else f"{hours} hours"
    return f"must not be more than {bound} in the future"


def _correct_clock_skew(
    sent_ms: int, timestamp: str, timestamp_ms: int, received_ms: int
) -> tuple[str, int]:
    """A client that says when it sent the event (`sent_at`, by its own clock) gets its
    timestamp moved by the difference between its clock and ours."""
    skew = received_ms - sent_ms
    if skew == 0:
        return timestamp, timestamp_ms
    # Kept within what a timestamp can be (1970 to 9999), like every timestamp sent.
    corrected = min(max(0, timestamp_ms + skew), _LATEST_MS)
    return format_ms(corrected), corrected


def _check_signature(body: dict[str, Any], secret: str, reject: Any) -> None:
    key = body.get("verification_key")
    signature = body.get("event_signature")
    if not isinstance(signature, str) or not signature:
        reject("event_signature", BLANK, "event_verification_error")
    if not isinstance(key, str) or not key:
        reject("verification_key", BLANK, "event_verification_error")
        if isinstance(signature, str) and signature:
            reject(
                "event_signature",
                "cannot be checked without verification_key",
                "event_verification_error",
            )
        return
    if isinstance(signature, str) and signature:
        expected = event_signature(key, secret).encode()
        given = signature.strip().lower().encode("utf-8", "replace")
        if not hmac.compare_digest(expected, given):
            reject(
                "event_signature", "does not match the verification key", "event_verification_error"
            )


def is_valid_event_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_EVENT_NAME
        and "." not in name
        and not _SPACE_OR_CONTROL_RE.search(name)
        and not _NUMERIC_RE.fullmatch(name)
    )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _identifier(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    return None if _blank(value) else value


def _number_to_string(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _is_coordinate(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    if not isinstance(value, int | float):
        return False
    limit = 90 if name == "latitude" else 180
    return -limit <= value <= limit


def _check_subscription_groups(groups: Any, reject: Any) -> None:
    if groups is None:
        return
    message = "must be an array of {id: string, subscribed: boolean}"
    if not isinstance(groups, list):
        reject("subscription_groups", message, "invalid_user_attributes")
        return
    for group in groups:
        if (
            not isinstance(group, dict)
            or not isinstance(group.get("id"), str)
            or not group["id"].strip()
            or not isinstance(group.get("subscribed"), bool)
        ):
            reject("subscription_groups", message, "invalid_user_attributes")
            return
    for group in groups:
        if len(group["id"]) > MAX_SUBSCRIPTION_GROUP_ID:
            reject(
                "subscription_groups",
                f"id is too long (maximum is {MAX_SUBSCRIPTION_GROUP_ID} characters)",
                "invalid_event_attributes",
            )
            return


def too_many_attributes(count: int, bound: int) -> str:
    return f"are too many: {count} fields (maximum is {bound} per event)"


def too_many_attribute_names(new: int, fixed: int, bound: int) -> EventRejected:
    """The store's refusal of an event whose new custom attribute names would take its
    account past its bound of names (a setting: --max-attribute-names)."""
    return EventRejected(
        "invalid_event_attributes",
        {
            "attributes": [
                f"would add {new} new attribute {'name' if new == 1 else 'names'} to the "
                f"{fixed} the account has (maximum is {bound} per account)"
            ]
        },
    )


def _check_attributes(body: dict[str, Any], reject: Any) -> None:
    """Attribute names at most 100 characters; no string anywhere holds a <script tag;
    values nested at most MAX_NESTING deep. One walk over every value, without recursion."""
    for name, value in body.items():
        if len(name) > MAX_ATTRIBUTE_NAME:
            reject(
                name,
                f"is too long a name (maximum is {MAX_ATTRIBUTE_NAME} characters)",
                "invalid_event_attributes",
            )
            continue
        if isinstance(value, str):
            if "<" in value and _SCRIPT_RE.search(value):
                reject(name, "must not contain a script tag", "invalid_event_attributes")
            continue
        if not isinstance(value, dict | list):
            continue
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_NESTING:
                reject(
                    name,
                    f"is nested too deeply (maximum is {MAX_NESTING} levels)",
                    "invalid_event_attributes",
                )
                break
            children = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict) and any(
                "<" in key and _SCRIPT_RE.search(key) for key in item
            ):
                reject(name, "must not contain a script tag", "invalid_event_attributes")
                break
            bad = False
            for child in children:
                if isinstance(child, str):
                    if "<" in child and _SCRIPT_RE.search(child):
                        bad = True
                        break
                elif isinstance(child, dict | list):
                    stack.append((child, depth + 1))
            if bad:
                reject(name, "must not contain a script tag", "invalid_event_attributes")
                break
