"""Attribute types: the type each custom attribute name's first use fixed, and its reset."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackway.http.routes.common import json_response, trackway_of, user_account


async def list_attributes(request: Request) -> Response:
    account = await user_account(request)
    return json_response(await trackway_of(request).attribute_types(account))


async def reset_attribute(request: Request) -> Response:
    account = await user_account(request)
    name = request.path_params["name"]
    return json_response(await trackway_of(request).reset_attribute_type(account, name))


routes = [
    Route("/api/v1/attributes", list_attributes, methods=["GET"]),
    # :path, since a name may hold a "/" (sent as %2F).
    Route("/api/v1/attributes/{name:path}", reset_attribute, methods=["DELETE"]),
]
