"""What every Starlette route shares: the user key, parameters, JSON answers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trackway.domain.errors import InvalidRequest
from trackway.domain.events import EventRejected, parse_json_object
from trackway.http.auth import (
    NotAuthorized,
    PermissionDenied,
    authorization_header,
    key_from_authorization,
)
from trackway.http.errors import RequestTooLarge, json_body
from trackway.service import Trackway
from trackway.store.base import Account


def trackway_of(request: Request) -> Trackway:
    trackway: Trackway = request.app.state.trackway
    return trackway


async def user_account(request: Request) -> Account:
    """The account of the request's user key: 401 without a valid key, 403 for an event key."""
    header = authorization_header(request.scope["headers"])
    credential = await trackway_of(request).credential_for(header, key_from_authorization)
    if credential is None:
        raise NotAuthorized(challenge=True)
    if credential.kind != "user":
        raise PermissionDenied()
    return credential.account


async def parameters(request: Request) -> dict[str, Any]:
    """Query parameters, overridden by the fields of a JSON object body when there is one."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method in ("POST", "PUT", "PATCH"):
        limit = trackway_of(request).settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(limit)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestTooLarge(limit)
        if body.strip():
            try:
                params.update(parse_json_object(bytes(body)))
            except EventRejected as exc:
                raise InvalidRequest(exc.errors) from None
    return params


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json_body(payload), status_code=status, media_type="application/json")
