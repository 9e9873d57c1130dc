#!/usr/bin/env python3
"""The request path alone: Trackway's app under `trackway serve`'s own server options, on a
store that answers at once (benchmarks only, never the product). Every key but the one in
TRACKWAY_BENCH_KEY is refused; every event is "stored" without a database.

    TRACKWAY_BENCH_KEY=KEY .venv/bin/python bench/null_store.py --port 8081
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from typing import Any

from trackway.domain.events import AcceptedEvent
from trackway.store.base import Account, Credential, IngestResult, Rejection

ACCOUNT = Account(1, "00000000-0000-4000-8000-000000000001", "bench", 0)


class NullStore:
    """Answers what the ingest paths ask, at once; any other call is an error."""

    def __init__(self, key: str) -> None:
        self.key_hash = hashlib.sha256(key.encode()).hexdigest()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def credential(self, key_hash: str) -> Credential | None:
        return Credential(ACCOUNT, "event", key_hash) if key_hash == self.key_hash else None

    async def ingest(
        self,
        account: Account,
        events: Sequence[AcceptedEvent],
        rejections: Sequence[Rejection] = (),
    ) -> IngestResult:
        return IngestResult(stored=len(events))

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"NullStore has no {name}")


def app() -> Any:
    from trackway.http.app import create_app
    from trackway.settings import Settings

    return create_app(Settings.from_env(), NullStore(os.environ["TRACKWAY_BENCH_KEY"]))


def main() -> None:
    import uvicorn

    from trackway.http.protocol import raise_file_limit
    from trackway.http.server import server_options
    from trackway.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    settings = Settings.from_env(port=args.port, workers=args.workers)
    raise_file_limit()
    uvicorn.run(
        "null_store:app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        **server_options(settings),
    )


if __name__ == "__main__":
    main()
