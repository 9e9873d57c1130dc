"""The clickstream page and the APIs it calls: the live stream (SSE), the error log (list,
one row, CSV/NDJSON download) and replay. All take the account's user key; a browser signs in
through its own Basic-auth prompt."""

from __future__ import annotations

import html
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from trackway import event_stream
from trackway.domain.errors import InvalidRequest, NotFound
from trackway.errors_log import (
    ErrorLog,
    error_document,
    error_filter,
    export_filename,
    export_format,
    page_cursor,
    page_limit,
    replay_ids,
)
from trackway.http.auth import CHALLENGE, NotAuthorized, PermissionDenied
from trackway.http.errors import MethodNotAllowed
from trackway.http.routes.common import json_response, parameters, trackway_of, user_account
from trackway.store.base import Account

_WEB = resources.files("trackway.http.web")
_TEMPLATE = _WEB.joinpath("templates/clickstream.html").read_text("utf-8")
_ASSETS = {
    name: (_WEB.joinpath(f"static/{name}").read_bytes(), media_type)
    for name, media_type in (
        ("clickstream.js", "application/javascript; charset=utf-8"),
        ("clickstream.css", "text/css; charset=utf-8"),
    )
}
# Everything the page loads comes from here; no inline script can run, whatever a payload holds.
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_SIGN_IN = (
    "<!doctype html><meta charset=utf-8><title>Trackway: sign in</title>"
    "<p style='font:16px system-ui;margin:3em'>Sign in with your account's <b>user API key</b> "
    "as the user name and an empty password. Reload to try again.</p>"
)
_EVENT_KEY = (
    "<!doctype html><meta charset=utf-8><title>Trackway: user key needed</title>"
    "<p style='font:16px system-ui;margin:3em'>That is an <b>event API key</b>: it can send "
    "events but not read them. Sign in with the account's <b>user API key</b> (close the "
    "browser window, or open a private one, to be asked again).</p>"
)
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
}


def render_page(account: Account) -> str:
    page = _TEMPLATE
    for name, value in (("account_name", account.name), ("account_uuid", account.uuid)):
        page = page.replace("{{ " + name + " }}", html.escape(value, quote=True))
    return page


async def page(request: Request) -> Response:
    try:
        account = await user_account(request)
    except NotAuthorized:
        return Response(
            _SIGN_IN,
            401,
            media_type="text/html",
            headers={"cache-control": "no-store", "www-authenticate": CHALLENGE},
        )
    except PermissionDenied:
        return Response(
            _EVENT_KEY, 403, media_type="text/html", headers={"cache-control": "no-store"}
        )
    return Response(render_page(account), media_type="text/html", headers=_PAGE_HEADERS)


def asset(name: str) -> Any:
    body, media_type = _ASSETS[name]

    async def serve(request: Request) -> Response:
        return Response(
            body,
            media_type=media_type,
            headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
        )

    return serve


async def stream(request: Request) -> Response:
    account = await user_account(request)
    event = request.query_params.get("event", "").strip() or None
    # The browser resumes with Last-Event-ID; the page itself, after a refused reconnect, with
    # `after`.
    after = event_stream.last_event_id(
        request.headers.get("last-event-id") or request.query_params.get("after")
    )
    return StreamingResponse(
        event_stream.follow(trackway_of(request).store, account, event=event, after_id=after),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def list_errors(request: Request) -> Response:
    account = await user_account(request)
    params = dict(request.query_params)
    where = error_filter(params)
    fmt = export_format(params.get("format"))
    log = ErrorLog(trackway_of(request).store)
    if fmt == "json":
        cursor, limit = page_cursor(params.get("before")), page_limit(params.get("limit"))
        return json_response(await log.page(account, where, cursor, limit))
    filename = export_filename(account, where, fmt)
    return StreamingResponse(
        log.export(account, where, fmt),
        media_type=CONTENT_TYPES[fmt],
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "no-store",
        },
    )


async def one_error(request: Request) -> Response:
    account = await user_account(request)
    text = request.path_params["id"]
    if text == "replay":  # POST only: GET /api/v1/errors/replay is not a row's id
        raise MethodNotAllowed("POST")
    found = text.isascii() and text.isdigit() and len(text) < 19
    row = await ErrorLog(trackway_of(request).store).one(account, int(text)) if found else None
    if row is None:
        raise NotFound("Error not found")
    return json_response(error_document(row))


def same_origin(request: Request) -> bool:
    """False for a browser's request from another site: a page there could otherwise make the
    browser replay with the Basic credentials it keeps for this one (a text/plain form can
    carry a JSON body). Clients that are not browsers send no Origin."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:  # every current browser says, whatever proxies do to Host
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def replay(request: Request) -> Response:
    account = await user_account(request)
    if not same_origin(request):
        raise PermissionDenied()
    params = await parameters(request)
    ids = replay_ids(params.get("ids"))
    trackway = trackway_of(request)
    log = ErrorLog(trackway.store, trackway.max_ahead_ms, trackway.max_attributes)
    if ids is not None:
        outcome = await log.replay(account, ids=ids)
    elif params.get("type") or params.get("day") or params.get("all") is True:
        outcome = await log.replay(account, where=error_filter(params))
    else:
        raise InvalidRequest({"ids": ["give ids, or a type or day, or all: true"]})
    return json_response(outcome.document())


routes = [
    Route("/clickstream", page, methods=["GET"]),
    Route("/clickstream/clickstream.js", asset("clickstream.js"), methods=["GET"]),
    Route("/clickstream/clickstream.css", asset("clickstream.css"), methods=["GET"]),
    Route("/clickstream/stream", stream, methods=["GET"]),
    Route("/api/v1/errors", list_errors, methods=["GET"]),
    Route("/api/v1/errors/replay", replay, methods=["POST"]),
    Route("/api/v1/errors/{id}", one_error, methods=["GET"]),
]
