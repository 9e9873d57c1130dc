"""The OpenAPI 3 document of the whole API, served at GET /openapi.json.

Written here rather than derived from the routes: the ingest paths are a raw ASGI handler and
the shapes are the documented ones, not a framework's. tests/http/test_openapi.py keeps it true
(its paths and methods against the app's routes) and tests/http/test_schemathesis.py fuzzes a
real server with it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trackway.domain import customers
from trackway.domain.events import ATTRIBUTE_TYPES, ERROR_TYPES
from trackway.domain.reads import HISTORY_MAX, SUMMARY_MAX_DAYS, TIMELINE_DEFAULT, TIMELINE_MAX
from trackway.http.errors import json_body
from trackway.settings import Settings

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str = "", **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_REQUEST_ID = {"$ref": "#/components/headers/X-Request-Id"}
_RETRY_AFTER = {"$ref": "#/components/headers/Retry-After"}


def _answer(
    description: str,
    schema: dict[str, Any] | None = None,
    *,
    media_type: str = JSON,
    retry_after: bool = False,
) -> dict[str, Any]:
    """A response object; every answer carries X-Request-Id, 429 and 503 a Retry-After."""
    headers: dict[str, Any] = {"X-Request-Id": _REQUEST_ID}
    if retry_after:
        headers["Retry-After"] = _RETRY_AFTER
    answer: dict[str, Any] = {"description": description, "headers": headers}
    if schema is not None:
        answer["content"] = {media_type: {"schema": schema}}
    return answer


def _message(description: str, **kwargs: Any) -> dict[str, Any]:
    return _answer(description, _ref("Message"), **kwargs)


_UNAUTHORIZED = _message(
    'No key, a malformed Authorization header or an unknown key: "Not authorized".'
)
_FORBIDDEN = _message('The event key on a read endpoint: "Permission denied".')
_UNAVAILABLE = _message(
    "The store cannot take or answer requests right now; retry after Retry-After seconds.",
    retry_after=True,
)
_RATE_LIMITED = _message(
    '"Rate limit exceeded"; retry after Retry-After seconds.', retry_after=True
)
_TOO_LARGE = _message("The body is over --max-body-bytes; the connection is closed.")
_TIMED_OUT = _message(
    "The client paused longer than --body-timeout while sending the body; the connection is closed."
)
_BAD_PARAMETERS = _answer("A parameter breaks its rule: {FIELD: [MESSAGE]}.", _ref("Errors"))


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_CUSTOMER_UUID = {
    "name": "uuid",
    "in": "path",
    "required": True,
    "description": "The customer's user_uuid (a merged-away uuid still answers).",
    "schema": _string(minLength=1),
}

# An event name: no `.`, no whitespace, not a number (is_valid_event_name).
EVENT_NAME_PATTERN = (
    r"^(?![+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?$)"
    r"[^.\s\u0000-\u001f\u007f]{1,64}$"
)
# Instants and days from 1970 on (none is stored before; earlier ones are refused).
_FROM_1970 = r"^(?:19[7-9][0-9]|[2-9][0-9]{3})-"
# An empty parameter counts as absent.
_EMPTY = {"type": "string", "maxLength": 0}
_INSTANT = _string(format="date-time", pattern=_FROM_1970)
_RANGE = [
    _query(
        "timestamp_start",
        {"anyOf": [_INSTANT, _EMPTY]},
        "ISO 8601 instant from 1970 on; start of the range (inclusive). Empty: absent.",
    ),
    _query(
        "timestamp_end",
        {"anyOf": [_INSTANT, _EMPTY]},
        "ISO 8601 instant from 1970 on; end of the range, not before its start. Empty: absent.",
    ),
]
# summary.json's bounds may also be days: the whole UTC day, the end day included.
_SUMMARY_BOUND = {"anyOf": [_INSTANT, _string(format="date", pattern=_FROM_1970), _EMPTY]}
_SUMMARY_RANGE = [
    _query(
        "timestamp_start",
        _SUMMARY_BOUND,
        "ISO 8601 instant, or a day YYYY-MM-DD (from its first millisecond, UTC); start of the "
        "range (inclusive).",
    ),
    _query(
        "timestamp_end",
        _SUMMARY_BOUND,
        "ISO 8601 instant, or a day YYYY-MM-DD (to its last millisecond, UTC: the day is "
        "counted whole); end of the range (inclusive).",
    ),
]


def _history_parameters(required: bool) -> list[dict[str, Any]]:
    return [
        _query(
            "event_name",
            _string(minLength=1, maxLength=64, pattern=EVENT_NAME_PATTERN),
            "The event name (no `.`, no whitespace, not a number: 422 otherwise).",
            required,
        ),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": HISTORY_MAX, "default": HISTORY_MAX},
            f"How many of the latest events, 1 to {HISTORY_MAX}.",
        ),
    ]


def _schemas(settings: Settings) -> dict[str, Any]:
    string_lists = {"type": "array", "items": {"type": "string"}}
    identifier = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    event_properties = {
        "event": _string(
            "The event name: no `.`, no whitespace, not numeric.",
            minLength=1,
            maxLength=64,
            pattern=EVENT_NAME_PATTERN,
        ),
        "event_uuid": _string("RFC 4122 UUID; generated when absent.", format="uuid"),
        "customer_id": {**identifier, "description": "The customer's id in your systems."},
        "retailer_customer_id": {**identifier, "description": "Alias of customer_id."},
        "email": _string(maxLength=254),
        "email_hash": _string("md5 of the lower-cased email.", pattern="^[0-9a-fA-F]{32}$"),
        "device_id": _string(maxLength=255),
        "cookie": _string(maxLength=255),
        "timestamp": {
            "oneOf": [_string(format="date-time"), {"type": "number"}],
            "description": "ISO 8601 or Unix seconds; default: the time of receipt. "
            + (
                f"At most {settings.max_future_hours} hours after the receipt, after clock-skew "
                "correction (--max-future-hours)."
                if settings.max_future_hours
                else "Any instant to 9999 (--max-future-hours 0)."
            ),
        },
        "sent_at": {
            "oneOf": [_string(format="date-time"), {"type": "number"}],
            "description": "The client's clock when it sent the event (corrects skew).",
        },
        "user_agent": _string("The browser's; parsed into the browser_* fields of reads."),
        "ip": _string(),
        "referrer": _string(),
        "url": _string(),
        "site": _string(),
        "session_uuid": _string(),
        "subscription_groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "subscribed"],
                "properties": {
                    "id": _string(minLength=1, maxLength=255),
                    "subscribed": {"type": "boolean"},
                },
            },
        },
    }
    event_document = {
        "type": "object",
        "description": "An event as stored: the body as sent plus what the store added.",
        "required": ["event", "event_uuid", "user_uuid", "account_uuid", "timestamp_epoch"],
        "properties": {
            "event": _string(),
            "event_uuid": _string(format="uuid"),
            "user_uuid": _string(format="uuid"),
            "account_uuid": _string(format="uuid"),
            "_bsft_ts": _string(format="date-time"),
            "timestamp_epoch": {"type": "integer"},
        },
        "additionalProperties": True,
    }
    return {
        "Message": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": _string()},
        },
        "Errors": {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {
                    "type": "object",
                    "description": "Each field's messages.",
                    "additionalProperties": string_lists,
                }
            },
        },
        "Ok": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["OK"]}},
        },
        "Event": {
            "type": "object",
            "description": (
                "`event` and at least one identifier (customer_id, email, email_hash, "
                "device_id, cookie) are required. The fields Trackway reads or fills are typed "
                "by its rules (these, and what a read adds: account_uuid, user_uuid, "
                "timestamp_epoch, …); every other key is a custom attribute, kept as sent (the "
                "first type seen for a name is fixed for the account: /api/v1/attributes). "
                f"At most {settings.max_event_attributes} fields in all "
                "(--max-event-attributes); an event whose new custom names would take its "
                f"account past {settings.max_attribute_names} names (--max-attribute-names) is "
                "refused: 400, invalid_event_attributes."
            ),
            "required": ["event"],
            "properties": event_properties,
            "maxProperties": settings.max_event_attributes,
            "additionalProperties": True,
        },
        "Bulk": {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "description": f"At most {settings.max_bulk_events} events (413 over it).",
                    "items": _ref("Event"),
                }
            },
        },
        "BulkAccepted": {
            "type": "object",
            "required": ["status", "count"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "count": {"type": "integer", "minimum": 0},
            },
        },
        "BulkPartial": {
            "type": "object",
            "required": ["status", "count", "errors"],
            "properties": {
                "status": {"type": "string", "enum": ["partial"]},
                "count": {"type": "integer", "minimum": 0, "description": "Events stored."},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "event_uuid", "errors"],
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "event_uuid": _nullable(_string()),
                            "errors": {"type": "object", "additionalProperties": string_lists},
                        },
                    },
                },
            },
        },
        "Customer": {
            "type": "object",
            "description": (
                "The profile: identifiers, subscriptions and identify attributes. Each "
                "attribute is also a top-level key unless the document uses its name itself; "
                "`attributes` holds every one as sent."
            ),
            "required": [
                "uuid",
                "customer_id",
                "email",
                "emails",
                "device_ids",
                "cookies",
                "subscription_groups",
                "attributes",
                "created_at",
                "updated_at",
            ],
            "properties": {
                "uuid": _string(format="uuid"),
                "customer_id": _nullable(_string()),
                "email": _nullable(_string("The newest email an identify carried.")),
                "emails": {
                    **string_lists,
                    "description": "Every email the customer was seen with (each finds it).",
                },
                "device_ids": string_lists,
                "cookies": string_lists,
                "subscription_groups": {
                    "type": "object",
                    "additionalProperties": {"type": "boolean"},
                },
                "attributes": {
                    "type": "object",
                    "description": "Every profile attribute as identify events sent it.",
                    "additionalProperties": True,
                },
                "created_at": _string(format="date-time"),
                "updated_at": _string(format="date-time"),
            },
            "additionalProperties": True,
        },
        "CustomerAnswer": {
            "type": "object",
            "required": ["customer"],
            "properties": {"customer": _ref("Customer")},
        },
        "CustomerDetails": {
            "allOf": [
                _ref("Customer"),
                {
                    "type": "object",
                    "description": "What explains the profile.",
                    "required": ["last_seen_at", "identifiers", "merged_profiles", "conflicts"],
                    "properties": {
                        "last_seen_at": _string(
                            "The newest timestamp of its events, to the minute.",
                            format="date-time",
                        ),
                        "identifiers": {
                            "type": "array",
                            "description": "Every identifier that finds it, oldest first.",
                            "items": {
                                "type": "object",
                                "required": ["kind", "value", "first_seen_at"],
                                "properties": {
                                    "kind": {
                                        "type": "string",
                                        "enum": [
                                            "customer_id",
                                            "email",
                                            "email_hash",
                                            "device_id",
                                            "cookie",
                                        ],
                                    },
                                    "value": _string(),
                                    "first_seen_at": _string(format="date-time"),
                                },
                            },
                        },
                        "merged_profiles": {
                            "type": "array",
                            "description": "Profiles merged into this one; their uuids answer.",
                            "items": {
                                "type": "object",
                                "required": ["uuid", "created_at", "merged_at"],
                                "properties": {
                                    "uuid": _string(format="uuid"),
                                    "created_at": _string(format="date-time"),
                                    "merged_at": _nullable(
                                        _string(
                                            "Null for merges made before it was recorded.",
                                            format="date-time",
                                        )
                                    ),
                                },
                            },
                        },
                        "conflicts": {
                            "type": "array",
                            "description": (
                                "The newest identity conflicts (at most "
                                f"{customers.CONFLICTS_SHOWN}) the profile is either side of: "
                                "an event of `customer_uuid` carried an identifier that "
                                "`holder_uuid`, another identified customer, holds; never "
                                "merged."
                            ),
                            "items": {
                                "type": "object",
                                "required": [
                                    "kind",
                                    "value",
                                    "event_uuid",
                                    "at",
                                    "customer_uuid",
                                    "holder_uuid",
                                ],
                                "properties": {
                                    "kind": _string(),
                                    "value": _string(),
                                    "event_uuid": _string(),
                                    "at": _string(format="date-time"),
                                    "customer_uuid": _string(format="uuid"),
                                    "holder_uuid": _string(format="uuid"),
                                },
                            },
                        },
                    },
                },
            ]
        },
        "CustomerDetailsAnswer": {
            "type": "object",
            "required": ["customer"],
            "properties": {"customer": _ref("CustomerDetails")},
        },
        "CustomerSummary": {
            "type": "object",
            "required": [
                "uuid",
                "customer_id",
                "email",
                "matched",
                "last_seen_at",
                "created_at",
                "updated_at",
            ],
            "properties": {
                "uuid": _string(format="uuid"),
                "customer_id": _nullable(_string()),
                "email": _nullable(_string()),
                "matched": _nullable(
                    {
                        "type": "object",
                        "description": "The strongest identifier that starts with `q`.",
                        "required": ["kind", "value"],
                        "properties": {"kind": _string(), "value": _string()},
                    }
                ),
                "last_seen_at": _string(format="date-time"),
                "created_at": _string(format="date-time"),
                "updated_at": _string(format="date-time"),
            },
        },
        "CustomerPage": {
            "type": "object",
            "required": ["customers", "next"],
            "properties": {
                "customers": {"type": "array", "items": _ref("CustomerSummary")},
                "next": _nullable(_string("The `cursor` of the next page; null on the last page.")),
            },
        },
        "TimelinePage": {
            "type": "object",
            "required": ["uuid", "events", "next"],
            "properties": {
                "uuid": _string("The live customer's uuid.", format="uuid"),
                "events": {"type": "array", "items": _ref("StoredEvent")},
                "next": _nullable(_string("The `before` of the next page; null on the last page.")),
            },
        },
        "Deleted": {
            "type": "object",
            "required": ["status", "uuid", "events_deleted"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "uuid": _string(),
                "events_deleted": {"type": "integer", "minimum": 0},
            },
        },
        "AttributeType": {
            "type": "object",
            "required": ["name", "type", "first_seen_at"],
            "properties": {
                "name": _string("The custom attribute's name."),
                "type": {"type": "string", "enum": list(ATTRIBUTE_TYPES)},
                "first_seen_at": _nullable(
                    _string(
                        "When the type was fixed; null for one fixed before Trackway recorded "
                        "that.",
                        format="date-time",
                    )
                ),
            },
        },
        "AttributeTypes": {
            "type": "object",
            "required": ["attributes"],
            "properties": {
                "attributes": {
                    "type": "array",
                    "description": "By name, in code point order.",
                    "items": _ref("AttributeType"),
                }
            },
        },
        "AttributeReset": {
            "allOf": [
                _ref("AttributeType"),
                {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}},
                },
            ],
            "description": "The type forgotten.",
        },
        "StoredEvent": event_document,
        "Timeline": {"type": "array", "items": _ref("StoredEvent")},
        "History": {
            "type": "object",
            "description": "One key, the event name: its latest events, newest first.",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": "array", "items": _ref("StoredEvent")},
        },
        "Summary": _summary_schema(),
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
    }


def _summary_schema() -> dict[str, Any]:
    series = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    by_name = {"type": "object", "additionalProperties": series}
    return {
        "type": "object",
        "required": [
            "events_chart_stats",
            "stats",
            "status",
            "timestamp_start",
            "timestamp_end",
        ],
        "properties": {
            "events_chart_stats": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "required": ["archives", "error", "events", "timelapse"],
                    "properties": {
                        "archives": by_name,
                        "error": {
                            **by_name,
                            "description": "Every error type: " + ", ".join(ERROR_TYPES) + ".",
                        },
                        "events": by_name,
                        "timelapse": {
                            "type": "array",
                            "description": "MM/DD of each day of the range.",
                            "items": _string(),
                        },
                    },
                },
            },
            "stats": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["archived", "count", "display_name", "type"],
                    "properties": {
                        "archived": {"type": "boolean"},
                        "count": {"type": "integer", "minimum": 0},
                        "display_name": _nullable(_string()),
                        "type": {"type": "string", "enum": ["standard", "custom_event"]},
                    },
                },
            },
            "status": {"type": "string", "enum": ["ok"]},
            "timestamp_start": _string(format="date-time"),
            "timestamp_end": _string(format="date-time"),
        },
    }


def _json_body(schema: dict[str, Any], description: str, required: bool = True) -> Any:
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


def _preflight(operation_id: str, methods: str) -> dict[str, Any]:
    """OPTIONS on an ingest path: the CORS preflight of a page's script (--cors-origins)."""
    return {
        "operationId": operation_id,
        "summary": "CORS preflight",
        "description": (
            "A browser asks before a page's script may call this path. An allowed origin "
            f"(--cors-origins, default any) gets 204 with Access-Control-Allow-Methods: {methods} "
            "and Access-Control-Allow-Headers listing Authorization, Content-Type and "
            "X-Request-Id (and whatever Access-Control-Request-Headers asked for); another "
            "origin gets 403. Without an Origin header: 204 with Allow."
        ),
        "tags": ["ingest"],
        "security": [],
        "parameters": [
            {"name": "Origin", "in": "header", "required": False, "schema": _string()},
        ],
        "responses": {
            "204": {"description": "Allowed: the Access-Control-Allow-* headers say what."},
            "403": _message('The origin is not allowed: "Origin not allowed".'),
        },
    }


def _paths(settings: Settings) -> dict[str, Any]:
    ingest_common = {
        "401": _UNAUTHORIZED,
        "408": _TIMED_OUT,
        "413": _TOO_LARGE,
        "429": _RATE_LIMITED,
        "503": _UNAVAILABLE,
    }
    read_common = {"401": _UNAUTHORIZED, "403": _FORBIDDEN, "503": _UNAVAILABLE}
    read_body_common = {**read_common, "408": _TIMED_OUT, "413": _TOO_LARGE}
    history = {
        "200": _answer("The latest events of that name, newest first.", _ref("History")),
        "400": _BAD_PARAMETERS,
        "404": _message('No event of that name: "Event not found".'),
        "422": _answer("The name breaks the naming rules.", _ref("Errors")),
    }
    summary = {
        "200": _answer("One bucket per UTC day of the range.", _ref("Summary")),
        "400": _answer(
            "A bound is not an instant or day from 1970 on, the end is before the start, or "
            f"the range is longer than {SUMMARY_MAX_DAYS} days: {{FIELD: [MESSAGE]}}.",
            _ref("Errors"),
        ),
    }
    params_body = {
        "event_name": _string(minLength=1, maxLength=64, pattern=EVENT_NAME_PATTERN),
        "limit": {"type": "integer", "minimum": 1, "maximum": HISTORY_MAX},
    }
    # null in a body: the field is not given.
    range_body = {
        "timestamp_start": {**_SUMMARY_BOUND, "nullable": True},
        "timestamp_end": {**_SUMMARY_BOUND, "nullable": True},
    }
    return {
        "/api/v1/event": {
            "post": {
                "operationId": "sendEvent",
                "summary": "Send one event",
                "description": (
                    "Answered 200 only once the event is committed; a uuid the account has "
                    "already is answered 200 again and stored once. A rejected event is kept "
                    "in the account's error log and counted under its error type. The "
                    "Content-Type is not checked: the body must be one JSON object."
                ),
                "tags": ["ingest"],
                "requestBody": _json_body(_ref("Event"), "One event."),
                "responses": {
                    "200": _answer("Stored durably.", _ref("Ok")),
                    "400": _answer("The event breaks a rule.", _ref("Errors")),
                    **ingest_common,
                },
            },
            "options": _preflight("sendEventPreflight", "POST, OPTIONS"),
        },
        "/api/v1/bulkevents": {
            "post": {
                "operationId": "sendEvents",
                "summary": f"Send up to {settings.max_bulk_events} events",
                "tags": ["ingest"],
                "requestBody": _json_body(_ref("Bulk"), "The events."),
                "responses": {
                    "200": _answer("Every event stored.", _ref("BulkAccepted")),
                    "400": _answer(
                        "The valid events are stored; the others are listed (or the body is "
                        "not a JSON object with an `events` array).",
                        {"anyOf": [_ref("BulkPartial"), _ref("Errors")]},
                    ),
                    **ingest_common,
                    "413": _message(
                        "The body is over --max-body-bytes, or it carries more than "
                        "--max-bulk-events events."
                    ),
                },
            },
            "options": _preflight("sendEventsPreflight", "POST, OPTIONS"),
        },
        "/unity.gif": {
            "get": {
                "operationId": "pixel",
                "summary": "The browser pixel: one event in the query string",
                "description": (
                    "The event key rides in `x` (a browser cannot send Basic auth). The GIF is "
                    "answered whatever happens; a rejected event goes to the error log."
                ),
                "tags": ["ingest"],
                "security": [],
                "parameters": [
                    _query("x", _string(), "The event key."),
                    _query("e", _string(), "The event name."),
                    _query("k", _string(), "The cookie."),
                    _query("u", _string(), "The page url."),
                    _query("r", _string(), "The referrer."),
                    _query("t", _string(), "The time, Unix seconds."),
                    _query("z", _string(), "Cache-buster, ignored."),
                    {
                        "name": "attributes",
                        "in": "query",
                        "description": (
                            "Any other parameter is a string attribute; NAME_json carries the "
                            "JSON value of attribute NAME."
                        ),
                        "style": "form",
                        "explode": True,
                        "schema": {"type": "object", "additionalProperties": _string()},
                    },
                ],
                "responses": {
                    "200": _answer(
                        "A 1x1 transparent GIF, never cached.",
                        {"type": "string", "format": "binary"},
                        media_type="image/gif",
                    )
                },
            },
            "options": _preflight("pixelPreflight", "GET, HEAD, OPTIONS"),
        },
        "/api/v1/customers": {
            "get": {
                "operationId": "findCustomer",
                "summary": "Find a customer by one identifier",
                "description": (
                    "The first of customer_id, email (case-insensitive), email_hash, device_id, "
                    "cookie that is given is used."
                ),
                "tags": ["customers"],
                "parameters": [
                    _query(name, _string(), f"The customer's {name}.")
                    for name in ("customer_id", "email", "email_hash", "device_id", "cookie")
                ],
                "responses": {
                    "200": _answer("The customer.", _ref("CustomerAnswer")),
                    "400": _answer("No identifier given.", _ref("Errors")),
                    "404": _message('"Customer not found".'),
                    **read_common,
                },
            }
        },
        "/api/v1/customers/search": {
            "get": {
                "operationId": "searchCustomers",
                "summary": "Customers by identifier prefix, newest activity first",
                "description": (
                    "Customers whose customer_id, email (case-insensitive), device_id or cookie "
                    "starts with `q`; without `q`, every customer of the account. Newest "
                    "activity (the latest event timestamp, to the minute) first, in keyset "
                    "pages: pass `next` as `cursor` for the next page. Answered from index "
                    "ranges, never a scan of events."
                ),
                "tags": ["customers"],
                "parameters": [
                    _query(
                        "q",
                        _string(maxLength=customers.QUERY_MAX_CHARS),
                        "The prefix searched; blank or absent for every customer.",
                    ),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": customers.SEARCH_MAX,
                            "default": customers.SEARCH_DEFAULT,
                        },
                        "Customers per page.",
                    ),
                    _query(
                        "cursor",
                        _string(),
                        "The `next` of the previous page (opaque); absent for the first page.",
                    ),
                ],
                "responses": {
                    "200": _answer("One page of customers.", _ref("CustomerPage")),
                    "400": _BAD_PARAMETERS,
                    **read_common,
                },
            }
        },
        "/api/v1/customers/{uuid}/events": {
            "parameters": [_CUSTOMER_UUID],
            "get": {
                "operationId": "customerEvents",
                "summary": "A customer's timeline, newest first, in pages",
                "description": (
                    "The events in show_events' shape, newest first, in keyset pages: pass "
                    "`next` as `before` for the next page. Not counted against show_events' "
                    "calls an hour; each page holds at most "
                    f"{customers.TIMELINE_PAGE_MAX} events."
                ),
                "tags": ["customers"],
                "parameters": [
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": customers.TIMELINE_PAGE_MAX,
                            "default": customers.TIMELINE_PAGE_DEFAULT,
                        },
                        "Events per page.",
                    ),
                    _query(
                        "before",
                        _string(),
                        "The `next` of the previous page (opaque); absent for the newest.",
                    ),
                ],
                "responses": {
                    "200": _answer("One page of events, newest first.", _ref("TimelinePage")),
                    "400": _BAD_PARAMETERS,
                    "404": _message('"Customer not found".'),
                    **read_common,
                },
            },
        },
        "/api/v1/customers/{uuid}": {
            "parameters": [_CUSTOMER_UUID],
            "get": {
                "operationId": "getCustomer",
                "summary": "A customer by uuid, and what explains the profile",
                "tags": ["customers"],
                "responses": {
                    "200": _answer("The customer.", _ref("CustomerDetailsAnswer")),
                    "404": _message('"Customer not found".'),
                    **read_common,
                },
            },
            "delete": {
                "operationId": "deleteCustomer",
                "summary": "Privacy deletion: the customer, its identifiers and events",
                "description": (
                    "Counts already in the daily rollups stay; later events with the same "
                    "identifiers make a new customer."
                ),
                "tags": ["customers"],
                "responses": {
                    "200": _answer("Deleted.", _ref("Deleted")),
                    "404": _message('"Customer not found".'),
                    **read_common,
                },
            },
        },
        "/api/v1/customer_search/show_events": {
            "get": {
                "operationId": "showEvents",
                "summary": "A customer's timeline, oldest first",
                "description": (
                    f"{settings.show_events_per_hour} calls an hour per account "
                    "(--show-events-per-hour), shared by every worker process."
                ),
                "tags": ["customers"],
                "parameters": [
                    _query("uuid", _string(minLength=1), "The customer's uuid.", True),
                    *_RANGE,
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": TIMELINE_MAX,
                            "default": TIMELINE_DEFAULT,
                        },
                        "The latest `limit` events of the range.",
                    ),
                ],
                "responses": {
                    "200": _answer("The events, oldest first.", _ref("Timeline")),
                    "400": _BAD_PARAMETERS,
                    "404": _message('"Customer not found".'),
                    "429": _RATE_LIMITED,
                    **read_common,
                },
            }
        },
        "/api/v1/event/history": {
            "get": {
                "operationId": "eventHistory",
                "summary": "The latest events of one name",
                "tags": ["events"],
                "parameters": _history_parameters(required=True),
                "responses": {**history, **read_common},
            },
            "post": {
                "operationId": "eventHistoryPost",
                "summary": "The latest events of one name (parameters in a JSON body)",
                "description": (
                    "Fields of the JSON body override the query parameters; a query parameter "
                    "is checked all the same. null in the body: not given."
                ),
                "tags": ["events"],
                "parameters": _history_parameters(required=False),
                "requestBody": _json_body(
                    {"type": "object", "properties": params_body},
                    "event_name and limit.",
                    required=False,
                ),
                "responses": {**history, **read_body_common},
            },
        },
        "/api/v1/event/summary.json": {
            "get": {
                "operationId": "eventSummary",
                "summary": "Events and errors per UTC day",
                "description": (
                    "One bucket per UTC day from the start's day to the end's day. Default "
                    "range: the last 7 UTC days including today (from the start of the day 6 "
                    "days ago until now); with one bound only, the 7 days that begin or end on "
                    f"its day. At most {SUMMARY_MAX_DAYS} days."
                ),
                "tags": ["events"],
                "parameters": _SUMMARY_RANGE,
                "responses": {**summary, **read_common},
            },
            "post": {
                "operationId": "eventSummaryPost",
                "summary": "Events and errors per UTC day (parameters in a JSON body)",
                "description": (
                    "Fields of the JSON body override the query parameters; a query parameter "
                    "is checked all the same. null in the body: not given."
                ),
                "tags": ["events"],
                "parameters": _SUMMARY_RANGE,
                "requestBody": _json_body(
                    {"type": "object", "properties": range_body},
                    "timestamp_start and timestamp_end.",
                    required=False,
                ),
                "responses": {**summary, **read_body_common},
            },
        },
        "/api/v1/attributes": {
            "get": {
                "operationId": "listAttributeTypes",
                "summary": "The attribute types fixed by first use",
                "description": (
                    "The first type seen for a custom attribute name (string, timestamp, "
                    "number, boolean, object, array) is fixed for the account; an event with "
                    "another type later is refused (es_index_error). Fields Trackway types by "
                    "its own rules (the seed's body fields, user_agent, sent_at, …) are not "
                    "listed: they never enter this registry."
                ),
                "tags": ["attributes"],
                "responses": {
                    "200": _answer("Every fixed type, by name.", _ref("AttributeTypes")),
                    **read_common,
                },
            }
        },
        "/api/v1/attributes/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "The attribute's name (percent-encoded; it may hold a /).",
                    "schema": _string(minLength=1),
                }
            ],
            "delete": {
                "operationId": "resetAttributeType",
                "summary": "Forget a fixed type: the next event fixes it anew",
                "description": "Events stored already keep their values.",
                "tags": ["attributes"],
                "responses": {
                    "200": _answer("Forgotten.", _ref("AttributeReset")),
                    "404": _message('No type is fixed for that name: "Attribute not found".'),
                    **read_common,
                },
            },
        },
        "/trackway.js": {
            "get": {
                "operationId": "trackwayScript",
                "summary": "The pixel script for web pages",
                "tags": ["web"],
                "security": [],
                "responses": {
                    "200": _answer("The script.", _string(), media_type="application/javascript")
                },
            }
        },
        "/blueshift.js": {
            "get": {
                "operationId": "blueshiftScript",
                "summary": "The pixel script for pages that carry Blueshift's web snippet",
                "tags": ["web"],
                "security": [],
                "responses": {
                    "200": _answer("The script.", _string(), media_type="application/javascript")
                },
            }
        },
        "/": {
            "get": {
                "operationId": "home",
                "summary": "The way to the clickstream page",
                "tags": ["web"],
                "security": [],
                "responses": {
                    "302": {
                        "description": "To /clickstream.",
                        "headers": {
                            "Location": {"schema": _string(), "description": "/clickstream"},
                            "X-Request-Id": _REQUEST_ID,
                        },
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "The process is up and the store answers",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _answer("Healthy.", _ref("Health")), "503": _UNAVAILABLE},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of every worker process",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": _answer(
                        "The Prometheus text format.", _string(), media_type="text/plain"
                    )
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _answer("OpenAPI 3.0.", {"type": "object"})},
            }
        },
    }


def build_document(settings: Settings | None = None) -> dict[str, Any]:
    """The document for a server running with `settings` (its limits appear in it)."""
    from trackway.http import clickstream_openapi

    settings = settings or Settings()
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Trackway",
            "version": "1",
            "description": (
                "A self-hosted event-tracking API. Every call authenticates with HTTP Basic "
                "auth: the API key is the username, the password empty. The event key may "
                "only send events; the user key may send and read. Bodies are at most "
                f"{settings.max_body_bytes} bytes (--max-body-bytes)."
            ),
        },
        "security": [{"basicAuth": []}],
        "paths": {**_paths(settings), **clickstream_openapi.paths()},
        "components": {
            "securitySchemes": {
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The API key as the username, an empty password.",
                }
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The caller's X-Request-Id when short and printable, else "
                    "one made by the server.",
                    "schema": _string(),
                },
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
            "schemas": {**_schemas(settings), **clickstream_openapi.schemas()},
        },
    }


@lru_cache(maxsize=4)
def _encoded(settings: Settings) -> bytes:
    return json_body(build_document(settings))


async def openapi_page(request: Request) -> Response:
    settings: Settings = request.app.state.trackway.settings
    return Response(_encoded(settings), media_type=JSON)
