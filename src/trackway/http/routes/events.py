"""Reads about events: the history of one name, and the daily summary."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackway.http.routes.common import json_response, parameters, trackway_of, user_account


async def history(request: Request) -> Response:
    account = await user_account(request)
    return json_response(
        await trackway_of(request).event_history(account, await parameters(request))
    )


async def summary(request: Request) -> Response:
    account = await user_account(request)
    return json_response(await trackway_of(request).summary(account, await parameters(request)))


routes = [
    Route("/api/v1/event/history", history, methods=["GET", "POST"]),
    Route("/api/v1/event/summary.json", summary, methods=["GET", "POST"]),
]
