"""AsyncClient against a real `trackway serve` process: the core scenarios of Client, driven by
asyncio.run so that no async test plugin is needed."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from trackway.client import AsyncClient, QueueFullError, TrackwayClientError

from .support import LoseAnswer, ProxyTransport, Reply, assert_stored_once, stored_counts


async def purchases(client: AsyncClient, n: int) -> list[str]:
    return [await client.track("purchase", customer_id=f"c{i % 7}", n=i) for i in range(n)]


def test_250_events_go_in_three_batches_of_at_most_100(server, account):
    proxy = ProxyTransport()

    async def main() -> tuple[AsyncClient, list[str]]:
        async with AsyncClient(
            server.url, account.event_key, batch_size=100, flush_interval=60, transport=proxy
        ) as client:
            uuids = await purchases(client, 250)
        return client, uuids

    client, uuids = asyncio.run(main())
    assert proxy.sizes == [100, 100, 50]
    assert [u for e in proxy.exchanges for u in e.uuids] == uuids
    assert_stored_once(account, uuids)
    assert (client.sent, client.failed, client.retries) == (250, 0, 0)


def test_a_partial_batch_goes_after_flush_interval(server, account):
    proxy = ProxyTransport()

    async def main() -> list[str]:
        client = AsyncClient(server.url, account.event_key, flush_interval=0.2, transport=proxy)
        uuids = await purchases(client, 3)
        deadline = time.monotonic() + 5
        while not proxy.exchanges and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await client.aclose()
        return uuids

    uuids = asyncio.run(main())
    assert proxy.sizes == [3]
    assert_stored_once(account, uuids)


def test_flush_and_aclose(server, account):
    async def main() -> None:
        client = AsyncClient(server.url, account.event_key, flush_interval=60)
        first = await purchases(client, 5)
        assert await client.flush() is True
        assert_stored_once(account, first)
        second = await client.identify(customer_id="42", email="ada@example.com")
        await client.aclose()  # flushes
        assert_stored_once(account, [*first, second])
        with pytest.raises(TrackwayClientError):
            await client.track("purchase", customer_id="late")

    asyncio.run(main())
    assert account.stored(account.events()[-1]["event_uuid"])[1]["event"] == "identify"


def test_no_duplicates_after_a_retry_whose_first_attempt_was_stored(server, account, fast):
    proxy = ProxyTransport(LoseAnswer())

    async def main() -> tuple[AsyncClient, list[str]]:
        async with AsyncClient(server.url, account.event_key, transport=proxy, **fast) as client:
            uuids = await purchases(client, 50)
            assert await client.flush() is True
        return client, uuids

    client, uuids = asyncio.run(main())
    first, second = proxy.exchanges
    assert first.server_status == 200 and first.status is None
    assert second.status == 200
    assert first.uuids == second.uuids == uuids
    assert_stored_once(account, uuids)
    assert (client.sent, client.failed, client.retries) == (50, 0, 1)


def test_retry_after_503_is_waited(server, account, fast):
    proxy = ProxyTransport(Reply(503, retry_after="1"))

    async def main() -> list[str]:
        async with AsyncClient(server.url, account.event_key, transport=proxy, **fast) as client:
            return await purchases(client, 5)

    uuids = asyncio.run(main())
    assert proxy.statuses == [503, 200]
    assert 0.9 <= proxy.exchanges[1].at - proxy.exchanges[0].at < 4.0
    assert_stored_once(account, uuids)


def test_401_and_partial_answers_go_to_an_async_on_error(server, account, fast):
    calls: list[tuple[list[dict], httpx.Response]] = []

    async def on_error(events, reason):
        await asyncio.sleep(0)
        calls.append((events, reason))

    async def main() -> tuple[str, str, str]:
        async with AsyncClient(server.url, account.event_key, on_error=on_error, **fast) as c:
            good = await c.track("purchase", customer_id="p1")
            bad = await c.track("purchase", email="not an email")
        async with AsyncClient(server.url, "not-a-key", on_error=on_error, **fast) as c:
            unauthorized = await c.track("purchase", customer_id="p2")
        return good, bad, unauthorized

    good, bad, unauthorized = asyncio.run(main())
    assert [([e["event_uuid"] for e in events], r.status_code) for events, r in calls] == [
        ([bad], 400),
        ([unauthorized], 401),
    ]
    assert_stored_once(account, [good])


def test_full_queue_raises_or_drops(server, account):
    async def main() -> None:
        async with AsyncClient(
            server.url, account.event_key, max_queue=2, flush_interval=60
        ) as client:
            await purchases(client, 2)
            with pytest.raises(QueueFullError):
                await client.track("purchase", customer_id="overflow")
        async with AsyncClient(
            server.url, account.event_key, max_queue=2, flush_interval=60, on_full="drop"
        ) as client:
            await purchases(client, 2)
            assert await client.track("purchase", customer_id="overflow") is None
            assert client.dropped == 1

    asyncio.run(main())
    assert sum(stored_counts(account).values()) == 4


def test_aclose_with_a_timeout_gives_up_what_it_could_not_send(server, account):
    proxy = ProxyTransport(*[Reply(503, retry_after="20")] * 5)
    calls = []

    async def main() -> list[str]:
        client = AsyncClient(
            server.url,
            account.event_key,
            flush_interval=0.05,
            transport=proxy,
            on_error=lambda events, reason: calls.append((events, reason)),
        )
        uuids = await purchases(client, 3)
        while not proxy.exchanges:
            await asyncio.sleep(0.02)
        started = time.monotonic()
        await client.aclose(timeout=0.3)
        assert time.monotonic() - started < 3
        return uuids

    uuids = asyncio.run(main())
    [(events, reason)] = calls
    assert [e["event_uuid"] for e in events] == uuids
    assert isinstance(reason, TrackwayClientError)
    assert stored_counts(account) == {}
