"""Files for browsers: the trackway.js pixel script."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_SCRIPT = resources.files("trackway.http.web").joinpath("static/trackway.js").read_bytes()


async def trackway_js(request: Request) -> Response:
    return Response(
        _SCRIPT,
        media_type="application/javascript",
        headers={"cache-control": "public, max-age=300", "access-control-allow-origin": "*"},
    )


routes = [Route("/trackway.js", trackway_js, methods=["GET"])]
