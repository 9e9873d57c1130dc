"""How `trackway serve` runs the HTTP server: uvicorn with uvloop and httptools, through
Trackway's protocol (http/protocol.py: header and body timeouts, connection cap)."""

from __future__ import annotations

from typing import Any

from trackway.settings import Settings


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for these settings (also used by bench/ to run the same server)."""
    from trackway.http.protocol import TrackwayHttpToolsProtocol

    return {
        "loop": "uvloop",
        "http": TrackwayHttpToolsProtocol,
        "access_log": False,
        "server_header": False,
        "timeout_keep_alive": settings.keep_alive_timeout,
        # Forwarded headers only from the proxies named (uvicorn's own middleware, off else).
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
    }
