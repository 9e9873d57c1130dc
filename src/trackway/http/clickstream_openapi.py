"""The OpenAPI paths and schemas of the clickstream page and its APIs (routes/clickstream.py);
trackway/http/openapi.py puts them into the one document."""

from __future__ import annotations

from typing import Any

from trackway.domain.events import ERROR_TYPES
from trackway.errors_log import MAX_REPLAY_IDS, PAGE_DEFAULT, PAGE_MAX
from trackway.http.openapi import (
    _BAD_PARAMETERS,
    _FORBIDDEN,
    _TIMED_OUT,
    _TOO_LARGE,
    _UNAUTHORIZED,
    _UNAVAILABLE,
    _answer,
    _json_body,
    _message,
    _query,
    _ref,
    _string,
)

HTML = "text/html"


def _filters() -> list[dict[str, Any]]:
    return [
        _query(
            "type",
            {"type": "string", "enum": [*ERROR_TYPES, ""]},
            "Only this error type (empty: every type).",
        ),
        _query(
            "day",
            {"anyOf": [_string(format="date"), {"type": "string", "maxLength": 0}]},
            "Only errors received on this UTC day (YYYY-MM-DD; empty: any day).",
        ),
        _query(
            "status",
            {"type": "string", "enum": ["pending", "replayed", "all", ""], "default": "all"},
            "pending: not replayed yet; replayed: stored as events by a replay (empty: all).",
        ),
    ]


def paths() -> dict[str, Any]:
    read_common = {"401": _UNAUTHORIZED, "403": _FORBIDDEN, "503": _UNAVAILABLE}
    return {
        "/clickstream": {
            "get": {
                "operationId": "clickstreamPage",
                "summary": "The clickstream page: live stream, counts, errors",
                "description": (
                    "Sign in with the user key through the browser's Basic-auth prompt (the "
                    "user name; the password empty)."
                ),
                "tags": ["clickstream"],
                "responses": {
                    "200": _answer("The page.", _string(), media_type=HTML),
                    "401": _answer(
                        'No key or an unknown one; WWW-Authenticate: Basic realm="Trackway".',
                        _string(),
                        media_type=HTML,
                    ),
                    "403": _answer("An event key.", _string(), media_type=HTML),
                    "503": _UNAVAILABLE,
                },
            }
        },
        **{
            f"/clickstream/{name}": {
                "get": {
                    "operationId": operation,
                    "summary": f"The page's {what}",
                    "tags": ["clickstream"],
                    "security": [],
                    "responses": {"200": _answer(f"The {what}.", _string(), media_type=media)},
                }
            }
            for name, operation, what, media in (
                ("clickstream.js", "clickstreamScript", "script", "application/javascript"),
                ("clickstream.css", "clickstreamStyle", "style sheet", "text/css"),
            )
        },
        "/clickstream/stream": {
            "get": {
                "operationId": "clickstreamStream",
                "summary": "The account's events as they are stored (Server-Sent Events)",
                "description": (
                    "First the latest events (up to 50), then `event: ready`, then every event "
                    "within a second of its commit, each as `id: N` and `data:` the event as "
                    "show_events returns it. Read from the store, so every worker's events "
                    "show. A stream ends after 30 s; the browser reconnects with Last-Event-ID "
                    "(or pass `after`)."
                ),
                "tags": ["clickstream"],
                "parameters": [
                    _query("event", _string(), "Only events of this name."),
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0},
                        "Resume after this id (the Last-Event-ID header wins).",
                    ),
                ],
                "responses": {
                    "200": {
                        **_answer(
                            "The stream: text, one message per event; each message's `data:` "
                            "line is the JSON text of an object, the event as show_events "
                            "returns it (x-message-schema).",
                            _string(),
                            media_type="text/event-stream",
                        ),
                        "x-message-schema": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer", "description": "The cursor."},
                                "event": {"type": "string", "enum": ["ready"]},
                                "data": {
                                    "type": "object",
                                    "description": "The event (JSON text on the wire).",
                                    "additionalProperties": True,
                                },
                            },
                        },
                    },
                    **read_common,
                },
            }
        },
        "/api/v1/errors": {
            "get": {
                "operationId": "listErrors",
                "summary": "The error log, newest first: a page, or all of it as CSV or NDJSON",
                "description": (
                    "Every rejected event of the account with its messages and raw payload. "
                    "format=json gives a page (`next` is the `before` of the following one); "
                    "csv and ndjson give every matching row as a download."
                ),
                "tags": ["errors"],
                "parameters": [
                    *_filters(),
                    _query(
                        "format",
                        {"type": "string", "enum": ["json", "csv", "ndjson"], "default": "json"},
                        "json: a page; csv or ndjson: the whole filtered log.",
                    ),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": PAGE_MAX,
                            "default": PAGE_DEFAULT,
                        },
                        "Rows a page (format=json).",
                    ),
                    _query(
                        "before",
                        _string(pattern=r"^[0-9]{1,18}:[0-9]{1,18}$"),
                        "The `next` of the previous page (RECEIVED_MS:ID).",
                    ),
                ],
                "responses": {
                    "200": {
                        **_answer("A page, or the download.", _ref("ErrorPage")),
                        "content": {
                            "application/json": {"schema": _ref("ErrorPage")},
                            "text/csv": {"schema": _string()},
                            "application/x-ndjson": {"schema": _string()},
                        },
                    },
                    "400": _BAD_PARAMETERS,
                    **read_common,
                },
            }
        },
        "/api/v1/errors/{id}": {
            "get": {
                "operationId": "getError",
                "summary": "One row of the error log, with its whole payload",
                "tags": ["errors"],
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
                "responses": {
                    "200": _answer("The row.", _ref("LoggedError")),
                    "404": _message('"Error not found" (or "Not found").'),
                    **read_common,
                },
            }
        },
        "/api/v1/errors/replay": {
            "post": {
                "operationId": "replayErrors",
                "summary": "Resubmit stored payloads through today's rules",
                "description": (
                    "The rows of `ids`, or every pending row of `type` and/or `day`, or with "
                    "`all: true` every pending row. Those that pass now are stored as events "
                    "(validation, identity, dedup by event_uuid, rollups as for any event) and "
                    "marked replayed; the others stay pending with their new messages."
                ),
                "tags": ["errors"],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "properties": {
                            "ids": {
                                "type": "array",
                                "items": {"type": "integer", "minimum": 0},
                                "minItems": 1,
                                "maxItems": MAX_REPLAY_IDS,
                            },
                            "type": {"type": "string", "enum": list(ERROR_TYPES)},
                            "day": _string(format="date"),
                            "all": {"type": "boolean"},
                        },
                    },
                    "What to replay.",
                ),
                "responses": {
                    "200": _answer("What happened to each row.", _ref("ReplayOutcome")),
                    "400": _BAD_PARAMETERS,
                    **read_common,
                    "408": _TIMED_OUT,
                    "413": _TOO_LARGE,
                },
            }
        },
    }


def schemas() -> dict[str, Any]:
    nullable_time = {"type": "string", "format": "date-time", "nullable": True}
    return {
        "LoggedError": {
            "type": "object",
            "required": ["id", "received_at", "error_type", "errors", "raw", "status"],
            "properties": {
                "id": {"type": "integer"},
                "received_at": _string(format="date-time"),
                "error_type": {"type": "string", "enum": list(ERROR_TYPES)},
                "errors": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "raw": _string("The payload as received (UTF-8; cut at 64 KiB)."),
                "raw_truncated": {
                    "type": "boolean",
                    "description": "In a page, `raw` is the first 2,000 characters.",
                },
                "status": {"type": "string", "enum": ["pending", "replayed"]},
                "replayed_at": nullable_time,
                "replayed_event_uuid": {"type": "string", "nullable": True},
                "retried_at": nullable_time,
                "source": {
                    "type": "string",
                    "enum": ["json", "pixel"],
                    "description": "How `raw` arrived, and how a replay reads it: json (a body "
                    "of /api/v1/event or /bulkevents, an import line, an event the store "
                    "refused) or pixel (the query string of GET /unity.gif, without its key).",
                },
                "context": {
                    "type": "object",
                    "nullable": True,
                    "description": "Of a pixel row: the user agent, IP and referrer of its "
                    "request, which a replay fills in as the pixel did.",
                    "properties": {
                        "user_agent": {"type": "string", "nullable": True},
                        "ip": {"type": "string", "nullable": True},
                        "referrer": {"type": "string", "nullable": True},
                    },
                },
            },
        },
        "ErrorPage": {
            "type": "object",
            "required": ["errors", "total", "total_capped", "next"],
            "properties": {
                "errors": {"type": "array", "items": _ref("LoggedError")},
                "total": {"type": "integer", "minimum": 0},
                "total_capped": {"type": "boolean"},
                "next": {"type": "string", "nullable": True},
            },
        },
        "ReplayOutcome": {
            "type": "object",
            "required": ["status", "replayed", "failed", "skipped", "missing", "results"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "replayed": {"type": "integer"},
                "failed": {"type": "integer"},
                "skipped": {"type": "integer"},
                "missing": {"type": "integer"},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "status"],
                        "properties": {
                            "id": {"type": "integer"},
                            "status": {
                                "type": "string",
                                "enum": ["replayed", "failed", "skipped", "missing"],
                            },
                        },
                    },
                },
            },
        },
    }
