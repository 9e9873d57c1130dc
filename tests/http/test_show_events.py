"""GET /api/v1/customer_search/show_events?uuid=: a customer's timeline in the seed's shape,
its order, range and limit, its errors, and the hourly call limit shared by worker processes.

The shared server allows 10 calls an hour per account: each test here uses a fresh account
and at most 10 calls."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Server, basic, create_account
from support import (
    CUSTOMER_NOT_FOUND,
    FIREFOX_126_WINDOWS,
    RATE_LIMITED,
    SHOW_EVENTS_URL,
    avoid_hour_boundary,
    bulk_ok,
    customer_uuid,
    iso_ms,
    send,
    show_events,
    timeline,
)

SEED_FIELDS_NULL_WHEN_ABSENT = (
    "cookie",
    "email",
    "ip",
    "referrer",
    "session_uuid",
    "site",
    "url",
    "user_agent",
    "browser_platform",
    "browser_type",
    "browser_version",
)


def test_event_has_the_seed_fields_and_values(client, account):
    sent = {
        "event": "identify",
        "cookie": "b854bae6-6dc8-c80c-6133-c45d0ba0fdc4",
        "email": "jane@example.com",
        "ip": "201.33.19.3",
        "referrer": "http://site.com/from",
        "site": "http://site.com",
        "url": "http://site.com/page",
        "user_agent": FIREFOX_126_WINDOWS,
        "timestamp": "2021-06-24T04:53:54Z",
        "plan": "gold",
        "cart": {"items": [{"sku": "A-1", "price": 9.5}], "total": 9.5},
        "vip": True,
    }
    event_uuid = send(client, account, sent)
    row, _ = account.stored(event_uuid)
    user_uuid = row["user_uuid"]
    received = iso_ms(row["received_ms"])
    (document,) = timeline(client, account, user_uuid)
    assert document == {
        **sent,
        "_bsft_doc_type": "events",
        "_bsft_ts": received,
        "_bsft_type": {"name": "events", "parent": user_uuid},
        "account_uuid": account.uuid,
        "browser_platform": "Windows",
        "browser_type": "Firefox",
        "browser_version": "126.0",
        "event_uuid": event_uuid,
        "santized_at": received,
        "session_uuid": None,
        "timestamp_epoch": 1624510434,
        "user_uuid": user_uuid,
    }
    assert type(document["timestamp_epoch"]) is int
    assert type(document["cart"]["total"]) is float


def test_seed_fields_are_null_when_the_event_has_none(client, account):
    event_uuid = send(client, account, {"event": "signup", "customer_id": "c-1"})
    row, _ = account.stored(event_uuid)
    (document,) = timeline(client, account, row["user_uuid"])
    for name in SEED_FIELDS_NULL_WHEN_ABSENT:
        assert name in document and document[name] is None, name
    assert document["customer_id"] == "c-1"
    assert document["event"] == "signup"
    # No timestamp sent: the receipt time, to the millisecond.
    assert document["timestamp"] == iso_ms(row["received_ms"]) == document["_bsft_ts"]
    assert document["timestamp_epoch"] == row["received_ms"] // 1000


@pytest.mark.parametrize(
    ("user_agent", "platform", "browser", "version"),
    [
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/91.0.4472.77 Safari/537.36",
            "Mac OS X",
            "Chrome",
            "91.0",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "iOS",
            "Mobile Safari",
            "17.4",
        ),
    ],
    ids=["chrome_mac", "safari_iphone"],
)
def test_browser_fields_from_other_user_agents(
    client, account, user_agent, platform, browser, version
):
    event_uuid = send(client, account, {"event": "view", "cookie": "ck", "user_agent": user_agent})
    row, _ = account.stored(event_uuid)
    (document,) = timeline(client, account, row["user_uuid"])
    assert (
        document["browser_platform"],
        document["browser_type"],
        document["browser_version"],
    ) == (platform, browser, version)


def test_events_are_oldest_first_by_timestamp(client, account):
    timestamps = [
        "2024-03-05T00:00:00Z",
        "2024-03-01T00:00:00Z",
        "2024-03-04T00:00:00.500Z",
        "2024-03-02T00:00:00Z",
        "2024-03-04T00:00:00.499Z",
    ]
    for t in timestamps:
        send(client, account, {"event": "view", "cookie": "ck-1", "timestamp": t})
    events = timeline(client, account, customer_uuid(client, account, cookie="ck-1"))
    assert [e["timestamp"] for e in events] == sorted(timestamps)


@pytest.fixture
def five_days(client, account) -> tuple[str, list[str]]:
    """A customer with one event at noon of 2024-03-01 … 2024-03-05, sent newest first."""
    sent = {}
    for day in (5, 4, 3, 2, 1):
        sent[day] = send(
            client,
            account,
            {"event": "view", "cookie": "ck-1", "timestamp": f"2024-03-0{day}T12:00:00Z"},
        )
    return customer_uuid(client, account, cookie="ck-1"), [sent[d] for d in (1, 2, 3, 4, 5)]


def test_timestamp_start_and_end_select_a_range(client, account, five_days):
    user_uuid, event_uuids = five_days
    events = timeline(
        client,
        account,
        user_uuid,
        timestamp_start="2024-03-02T00:00:00Z",
        timestamp_end="2024-03-04T23:00:00Z",
    )
    assert [e["event_uuid"] for e in events] == event_uuids[1:4]
    events = timeline(client, account, user_uuid, timestamp_start="2024-03-04T00:00:00Z")
    assert [e["event_uuid"] for e in events] == event_uuids[3:]
    events = timeline(client, account, user_uuid, timestamp_end="2024-03-01T12:00:01Z")
    assert [e["event_uuid"] for e in events] == event_uuids[:1]
    assert timeline(client, account, user_uuid, timestamp_start="2024-03-06T00:00:00Z") == []


def test_limit_is_the_latest_events_still_oldest_first(client, account, five_days):
    user_uuid, event_uuids = five_days
    events = timeline(client, account, user_uuid, limit="2")
    assert [e["event_uuid"] for e in events] == event_uuids[3:]
    events = timeline(client, account, user_uuid, limit="1")
    assert [e["event_uuid"] for e in events] == event_uuids[4:]
    events = timeline(client, account, user_uuid, limit="2", timestamp_end="2024-03-03T23:00:00Z")
    assert [e["event_uuid"] for e in events] == event_uuids[1:3]
    assert len(timeline(client, account, user_uuid, limit="10000")) == 5


def test_bad_parameters_are_400(client, account):
    send(client, account, {"event": "view", "cookie": "ck-1"})
    user_uuid = customer_uuid(client, account, cookie="ck-1")
    for limit in ("0", "10001", "x", "-3", "1.5"):
        response = show_events(client, account, user_uuid, limit=limit)
        assert response.status_code == 400, limit
        assert response.json() == {"errors": {"limit": ["must be between 1 and 10000"]}}
    response = show_events(client, account, user_uuid, timestamp_start="last tuesday")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["timestamp_start"]
    response = show_events(
        client,
        account,
        user_uuid,
        timestamp_start="2024-03-02T00:00:00Z",
        timestamp_end="2024-03-01T00:00:00Z",
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["timestamp_end"]


def test_missing_uuid_is_400(client, account):
    for params in ({}, {"uuid": ""}, {"uuid": "   "}):
        response = client.get(SHOW_EVENTS_URL, params=params, headers=basic(account.user_key))
        assert response.status_code == 400, params
        assert response.json() == {"errors": {"uuid": ["can't be blank"]}}


def test_unknown_uuid_is_404(client, account):
    send(client, account, {"event": "view", "cookie": "ck-1"})
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        response = show_events(client, account, unknown)
        assert response.status_code == 404
        assert response.json() == CUSTOMER_NOT_FOUND


def test_only_that_customers_events(client, account):
    mine = send(client, account, {"event": "view", "cookie": "ck-1"})
    send(client, account, {"event": "view", "cookie": "ck-2"})
    events = timeline(client, account, customer_uuid(client, account, cookie="ck-1"))
    assert [e["event_uuid"] for e in events] == [mine]


# -- the hourly limit, across worker processes ------------------------------------------------

PER_HOUR = 3


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("show_events_limit")
    server = Server(
        directory / "trackway.db",
        directory / "server.log",
        "--show-events-per-hour",
        str(PER_HOUR),
        "--workers",
        "2",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def server_side_owners(port: int) -> dict[int, int]:
    """Client port → pid of the process holding the server side of that connection, for the
    established TCP connections to `port` (from /proc: which worker accepted each one)."""
    inode_pid: dict[str, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inode_pid[target[8:-1]] = int(pid)
    owners = {}
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inode_pid:
                owners[remote_port] = inode_pid[fields[9]]
    return owners


def connections_by_worker(server: Server, each: int) -> dict[int, list[socket.socket]]:
    """Open connections to the server until two worker processes have accepted at least
    `each` of them; grouped by the pid of the worker that accepted each one (-1: unknown)."""
    sockets: list[socket.socket] = []
    grouped: dict[int, list[socket.socket]] = {}
    while len(sockets) < 200:
        batch = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
        sockets += batch
        deadline = time.monotonic() + 10
        while True:
            owners = server_side_owners(server.port)
            if all(s.getsockname()[1] in owners for s in batch) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for s in batch:
            grouped.setdefault(owners.get(s.getsockname()[1], -1), []).append(s)
        if sorted((len(v) for k, v in grouped.items() if k != -1), reverse=True)[1:2] >= [each]:
            break
    return grouped


def call_on(sock: socket.socket, key: str, user_uuid: str) -> tuple[int, dict[str, str], Any]:
    """GET show_events over an open connection: (status, headers, JSON body)."""
    request = (
        f"GET {SHOW_EVENTS_URL}?uuid={user_uuid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {basic(key)['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")
def test_rate_limit_is_shared_by_all_worker_processes(limited_server):
    account = create_account(limited_server.db_path)
    other = create_account(limited_server.db_path)
    with httpx.Client(base_url=limited_server.url, timeout=30.0) as c:
        send(c, account, {"event": "view", "cookie": "ck-1"})
        send(c, other, {"event": "view", "cookie": "ck-1"})
        user_uuid = customer_uuid(c, account, cookie="ck-1")
        other_uuid = customer_uuid(c, other, cookie="ck-1")
    avoid_hour_boundary()
    grouped = connections_by_worker(limited_server, 6)
    try:
        workers = [pid for pid in grouped if pid != -1]
        assert len(workers) == 2, f"connections were not spread over two workers: {grouped}"
        first, second = (grouped[pid] for pid in workers)
        # Twelve calls alternating between the two workers, each on a connection of its own.
        alternating = [s for pair in zip(first, second, strict=False) for s in pair][:12]
        assert len(alternating) == 12
        answers = [call_on(s, account.user_key, user_uuid) for s in alternating]
        other_answer = call_on(alternating[-1], other.user_key, other_uuid)
    finally:
        for sockets in grouped.values():
            for s in sockets:
                s.close()
    statuses = [status for status, _, _ in answers]
    # Calls 1 and 3 went to one worker, call 2 to the other: only a counter both share
    # refuses call 4, the second on its worker.
    assert statuses == [200] * PER_HOUR + [429] * (12 - PER_HOUR)
    for _, _, body in answers[:PER_HOUR]:
        assert [e["user_uuid"] for e in body] == [user_uuid]
    for _, headers, body in answers[PER_HOUR:]:
        assert body == RATE_LIMITED
        retry_after = headers["retry-after"]
        assert retry_after.isdigit(), retry_after
        assert 1 <= int(retry_after) <= 3600
    # The counter is per account: another account still has its calls.
    assert other_answer[0] == 200
    assert [e["user_uuid"] for e in other_answer[2]] == [other_uuid]


def test_default_limit_is_the_latest_1000(client, account):
    for batch in range(11):
        events = [
            {
                "event": "view",
                "cookie": "ck-1",
                "n": batch * 100 + i,
                "timestamp": 1_700_000_000 + batch * 100 + i,
            }
            for i in range(100 if batch < 10 else 5)
        ]
        bulk_ok(client, account, events)
    events = timeline(client, account, customer_uuid(client, account, cookie="ck-1"))
    assert [e["n"] for e in events] == list(range(5, 1005))
