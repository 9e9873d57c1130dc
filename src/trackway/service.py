"""The use cases, independent of HTTP: authenticate a key, ingest events."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Sequence

from trackway.domain.errors import EventRejected, StoreUnavailable
from trackway.domain.events import AcceptedEvent, decode_event_body
from trackway.domain.keys import hash_key
from trackway.domain.timestamps import now_ms
from trackway.settings import Settings
from trackway.store.base import Account, Credential, IngestResult, Rejection, Store

log = logging.getLogger("trackway.service")

# How long a key lookup is trusted in this process: a rotated key stops working within it.
CREDENTIAL_TTL_SECONDS = 5.0
CREDENTIAL_CACHE_SIZE = 10_000


class Trackway:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._credentials: dict[str, tuple[float, Credential | None]] = {}

    async def credential_for_key(self, key: str) -> Credential | None:
        """The account and kind a key opens, or None; cached briefly (negatives too, so that
        garbage keys do not reach the store on every request)."""
        key_hash = hash_key(key)
        now = time.monotonic()
        cached = self._credentials.get(key_hash)
        if cached is not None and cached[0] > now:
            credential = cached[1]
        else:
            credential = await self.store.credential(key_hash)
            if len(self._credentials) >= CREDENTIAL_CACHE_SIZE:
                self._credentials.clear()
            self._credentials[key_hash] = (now + CREDENTIAL_TTL_SECONDS, credential)
        if credential is None or not hmac.compare_digest(credential.key_hash, key_hash):
            return None
        return credential

    async def ingest_event(self, account: Account, raw: bytes) -> IngestResult:
        """Validate one event body and store it durably; a rejection is logged and counted,
        then raised as EventRejected."""
        received = now_ms()
        try:
            event = decode_event_body(raw, received)
        except EventRejected as rejected:
            await self.log_rejections(
                account, [Rejection(received, rejected.error_type, rejected.errors, raw)]
            )
            raise
        result = await self.store.ingest(account, [event])
        if result.rejected:
            raise result.rejected[0][1]
        return result

    async def ingest_events(
        self, account: Account, events: Sequence[AcceptedEvent], rejections: Sequence[Rejection]
    ) -> IngestResult:
        return await self.store.ingest(account, events, rejections)

    async def log_rejections(self, account: Account, rejections: Sequence[Rejection]) -> None:
        # The client gets its 400 even when the log cannot be written; the fault is logged.
        try:
            await self.store.ingest(account, (), rejections)
        except StoreUnavailable as exc:
            log.warning("could not log %d rejected event(s): %s", len(rejections), exc)
