"""The Python client of Trackway: queue events, send them in batches from the background.

    from trackway.client import Client

    with Client("http://localhost:8000", "EVENT_API_KEY") as client:
        client.identify(customer_id="42", email="ada@example.com", first_name="Ada")
        client.track("purchase", customer_id="42", total=49.99, products=[{"sku": "A1"}])
    # leaving the block flushed every queued event and stopped the sender thread

`track()` returns at once: the event gets its `event_uuid` and `timestamp` there, is queued,
and a background thread POSTs batches of up to `batch_size` to `/api/v1/bulkevents` every
`flush_interval` seconds, or as soon as a batch is full. Connection errors, timeouts, 429 and
5xx are retried with exponential backoff and full jitter, honouring `Retry-After`; a retry
sends the same event_uuids, so the server stores each event once even when an earlier attempt
was stored and only its answer was lost. What is given up (rejected by a 400 partial answer,
a 401, retries exhausted) goes to `on_error(events, response_or_exception)`, or is logged at
WARNING on the `trackway.client` logger. A full queue raises `QueueFullError`, or with
`on_full="drop"` drops the new event, counts it in `client.dropped` and logs a warning.

With asyncio:

    from trackway.client import AsyncClient

    async with AsyncClient("http://localhost:8000", "EVENT_API_KEY") as client:
        await client.track("view", cookie="b5c4...", url="https://shop.example/p/1")

Both take `transport=` (an httpx transport) to replace the network in tests, and keep the
counters `sent`, `failed`, `dropped` and `retries`.
"""

from trackway.client._async_client import AsyncClient
from trackway.client._client import Client
from trackway.client._exceptions import QueueFullError, TrackwayClientError

__all__ = [
    "AsyncClient",
    "Client",
    "QueueFullError",
    "TrackwayClientError",
]
