#!/usr/bin/env python3
"""CPU instructions per single-event request, the bare ASGI app against Trackway's request path
(bench/null_store.py: the real app and server options on a store that answers at once), counted
with valgrind's callgrind in one process without sockets: raw HTTP requests are fed to the HTTP
protocol of `trackway serve` (uvicorn's, through http/protocol.py) on 16 connections at a time.

    .venv/bin/python bench/request_path.py            # needs valgrind (apt-get install valgrind)

Each side is counted twice, with --requests and with a fifth of it; the difference over the
difference in requests is what one request costs, start-up excluded. Unlike time on a shared
machine, instruction counts repeat to within a fraction of a percent, so this is the figure to
compare between commits (bench/ingest.py measures time and CPU under wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CONNECTIONS = 16
KEY = "bench-request-path-key"
# bench/ingest.py's body, one of its customers.
BODY = (
    b'{"event":"view","customer_id":"bench-1-4242","product_id":"SKU-77","category":"shoes",'
    b'"price":59.9,"currency":"USD","in_stock":true,'
    b'"page_url":"https://shop.example.com/p/77?ref=home"}'
)


def request() -> bytes:
    auth = base64.b64encode(f"{KEY}:".encode())
    return (
        b"POST /api/v1/event HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic " + auth
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )  # fmt: skip


class Transport(asyncio.Transport):
    """Counts what the protocol writes; 200 answers by their status line."""

    def __init__(self) -> None:
        super().__init__()
        self.ok = 0
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data[:12]) == b"HTTP/1.1 200":
            self.ok += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def feed(side: str, requests: int) -> None:
    from uvicorn.config import Config
    from uvicorn.lifespan.on import LifespanOn
    from uvicorn.server import ServerState

    from trackway.http.server import server_options
    from trackway.settings import Settings

    os.environ["TRACKWAY_BENCH_KEY"] = KEY
    sys.path.insert(0, str(BENCH))
    options = server_options(Settings.from_env())
    if side == "bare":
        import bare_app

        app: Any = bare_app.app
    else:
        import null_store

        app = null_store.app()
    config = Config(app, lifespan="on" if side == "path" else "off", **options)
    config.load()
    lifespan = LifespanOn(config)
    if side == "path":
        await lifespan.startup()
    state = ServerState()
    connections = []
    for _ in range(CONNECTIONS):
        protocol = config.http_protocol_class(config=config, server_state=state, app_state={})
        transport = Transport()
        protocol.connection_made(transport)
        connections.append((protocol, transport))
    raw = request()
    turns = requests // CONNECTIONS
    for _ in range(turns + 5):  # 5 turns of warm-up
        for protocol, _transport in connections:
            protocol.data_received(raw)
        for _ in range(8):
            await asyncio.sleep(0)
    for _ in range(50):
        await asyncio.sleep(0)
    ok = sum(t.ok for _p, t in connections)
    if ok != (turns + 5) * CONNECTIONS:
        sys.exit(f"{side}: {ok} answers of 200 for {(turns + 5) * CONNECTIONS} requests")


def count(side: str, requests: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--feed", side, "--requests", str(requests)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        sys.exit(out.stderr[-2000:])
    return int(match[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--feed", choices=("bare", "path"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        import uvloop

        uvloop.run(feed(args.feed, args.requests))
        return 0
    few = args.requests // 5
    per = {}
    for side in ("bare", "path"):
        many_n, few_n = count(side, args.requests), count(side, few)
        per[side] = (many_n - few_n) / (args.requests - few)
    sys.path.insert(0, str(BENCH))
    from ingest import commit

    print("| side | instructions per request |\n|---|---:|")
    print(f"| bare ASGI app | {per['bare']:,.0f} |")
    print(f"| Trackway's request path | {per['path']:,.0f} |")
    print(f"\n- path over bare: {per['path'] / per['bare']:.2f}x; "
          f"Trackway's own: {per['path'] - per['bare']:,.0f} instructions per request")  # fmt: skip
    print(f"- command: `.venv/bin/python bench/request_path.py --requests {args.requests}`")
    print(f"- commit: {commit()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
