"""Reads about events: the history of one name, and the daily summary."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackway.http.routes.common import json_response, parameters, trackway_of, user_account


def _query_under_the_body(request: Request) -> dict[str, str] | None:
    """On POST, the query parameters the body may override: each is checked all the same."""
    return dict(request.query_params) if request.method == "POST" else None


async def history(request: Request) -> Response:
    account = await user_account(request)
    params, query = await parameters(request), _query_under_the_body(request)
    return json_response(await trackway_of(request).event_history(account, params, query))


async def summary(request: Request) -> Response:
    account = await user_account(request)
    params, query = await parameters(request), _query_under_the_body(request)
    return json_response(await trackway_of(request).summary(account, params, query))


routes = [
    Route("/api/v1/event/history", history, methods=["GET", "POST"]),
    Route("/api/v1/event/summary.json", summary, methods=["GET", "POST"]),
]
