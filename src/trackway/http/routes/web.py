"""Files for browsers: the pixel scripts trackway.js and blueshift.js, and the way from / to the
clickstream page."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

_STATIC = resources.files("trackway.http.web").joinpath("static")
# The part both scripts share goes in at this line of each: one file to read, no build step.
_INCLUDE = "  /* @include pixel.js */\n"


def pixel_script(name: str) -> bytes:
    text = _STATIC.joinpath(name).read_text("utf-8")
    if text.count(_INCLUDE) != 1:
        raise RuntimeError(f"{name} must hold the line {_INCLUDE.strip()!r} once")
    return text.replace(_INCLUDE, _STATIC.joinpath("pixel.js").read_text("utf-8")).encode()


def script(name: str) -> Route:
    body = pixel_script(name)

    async def serve(request: Request) -> Response:
        return Response(
            body,
            media_type="application/javascript; charset=utf-8",
            headers={
                "cache-control": "public, max-age=300",
                "access-control-allow-origin": "*",
                "x-content-type-options": "nosniff",
            },
        )

    return Route("/" + name, serve, methods=["GET"])


async def home(request: Request) -> Response:
    # Someone who opens the server's address in a browser wants the page.
    return RedirectResponse("/clickstream", status_code=302)


routes = [
    script("trackway.js"),
    script("blueshift.js"),
    Route("/", home, methods=["GET"]),
]
