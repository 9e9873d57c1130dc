"""create_app(settings) → the ASGI app: ingest paths in front, Starlette behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from trackway import metrics
from trackway.domain import enrich
from trackway.domain.errors import TrackwayError
from trackway.http.errors import RequestTooLarge, error_response, internal_error, json_body
from trackway.http.ingest import IngestEndpoints
from trackway.http.openapi import openapi_page
from trackway.http.routes import attributes, clickstream, customers, events, web
from trackway.service import Trackway
from trackway.settings import Settings
from trackway.store import Store, open_store

log = logging.getLogger("trackway.http")


def _respond(status: int, payload: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
    return Response(
        payload,
        status_code=status,
        media_type="application/json",
        headers={k.decode(): v.decode() for k, v in headers},
    )


async def _gone(request: Request, exc: Exception) -> Response:
    # The client went away, or the body timeout cut it (http/protocol.py): nobody reads this.
    return Response(status_code=499)


async def _domain_error(request: Request, exc: Exception) -> Response:
    answer = error_response(exc)
    if answer is None:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        answer = internal_error()
    return _respond(*answer)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found", 405: "Method not allowed"}
    message = messages.get(exc.status_code, exc.detail)
    headers = dict(exc.headers or {})
    return Response(
        json_body({"message": message}),
        exc.status_code,
        headers=headers,
        media_type="application/json",
    )


async def metrics_page(request: Request) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def healthz(request: Request) -> Response:
    trackway: Trackway = request.app.state.trackway
    await trackway.store.ping()
    return Response(json_body({"status": "ok"}), media_type="application/json")


def create_app(settings: Settings, store: Store | None = None) -> Any:
    """The app on `store` (default: the one settings.database_url names)."""
    trackway = Trackway(
        store
        or open_store(settings.database_url, max_attribute_names=settings.max_attribute_names),
        settings,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await trackway.store.open()
        await asyncio.to_thread(enrich.warm_up)
        try:
            yield
        finally:
            await trackway.store.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            Route("/openapi.json", openapi_page, methods=["GET"]),
            *customers.routes,
            *events.routes,
            *attributes.routes,
            *web.routes,
            *clickstream.routes,
        ],
        exception_handlers={
            TrackwayError: _domain_error,
            HTTPException: _http_error,
            RequestTooLarge: _domain_error,
            ClientDisconnect: _gone,
            Exception: _domain_error,
        },
        lifespan=lifespan,
    )
    app.state.trackway = trackway
    return IngestEndpoints(trackway, app, settings)


def app_from_env() -> Any:
    """The factory `trackway serve` hands to uvicorn: every worker reads TRACKWAY_* again."""
    return create_app(Settings.from_env())
