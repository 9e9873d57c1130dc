"""The live stream of the clickstream page: an account's events as they are committed, as
Server-Sent Events.

It reads from the store, never from this process's memory, so a page served by one worker
sees the events every other worker (or machine) stored: a poll every POLL_SECONDS asks for the
events after a cursor, which costs one index range of what arrived since the last poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import msgspec

from trackway.domain.enrich import timeline_document
from trackway.domain.errors import StoreUnavailable
from trackway.store.base import Account, ArrivedEvent, Store

log = logging.getLogger("trackway.stream")

POLL_SECONDS = 0.3
# Events shown on connecting, looked for among the last BACKFILL_WINDOW ids.
BACKFILL = 50
BACKFILL_WINDOW = 20_000
# Events sent per poll at most: past that the page shows the newest (a person cannot read
# more) and is told that some were skipped.
BATCH = 200
KEEPALIVE_SECONDS = 10.0
# A stream ends after this; the browser reconnects at once with Last-Event-ID, and its key is
# checked again (a rotated key stops the stream within this).
STREAM_SECONDS = 30.0
RETRY_MS = 500

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def last_event_id(header: str | None) -> int | None:
    text = (header or "").strip()
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    return None


def sse_events(account: Account, events: Sequence[ArrivedEvent]) -> bytes:
    """Each event as one SSE message: its id, and the event as show_events returns it."""
    out = bytearray()
    for e in events:
        doc = timeline_document(
            _decode(e.body),
            account_uuid=account.uuid,
            user_uuid=e.user_uuid,
            received_ms=e.received_ms,
            timestamp_ms=e.timestamp_ms,
        )
        out += b"id: %d\ndata: %s\n\n" % (e.id, _encode(doc))
    return bytes(out)


async def follow(
    store: Store,
    account: Account,
    *,
    event: str | None = None,
    after_id: int | None = None,
    seconds: float = STREAM_SECONDS,
) -> AsyncIterator[bytes]:
    """SSE bytes: the latest events (when not resuming after `after_id`), then every event as
    it is committed, for `seconds`."""
    yield b"retry: %d\n\n" % RETRY_MS
    if after_id is None:
        latest = await store.latest_event_id(account)
        recent = await store.events_since(
            account, max(0, latest - BACKFILL_WINDOW), BACKFILL, event
        )
        after_id = max([latest, *(e.id for e in recent)])
        # The latest events, then `ready`: what follows arrived while the page was open.
        yield sse_events(account, recent) + b"event: ready\ndata: {}\n\n"
    deadline = time.monotonic() + seconds
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        try:
            arrived = await store.events_since(account, after_id, BATCH, event)
        except StoreUnavailable as exc:
            log.warning("live stream: %s", exc)
            await asyncio.sleep(1.0)
            continue
        if arrived:
            chunk = sse_events(account, arrived)
            if len(arrived) == BATCH:
                chunk = b"event: skipped\ndata: {}\n\n" + chunk
            yield chunk
            after_id = arrived[-1].id
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
