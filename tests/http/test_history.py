"""/api/v1/event/history: the latest successful events of one name, newest first, by GET with a
query or POST with a JSON body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Account, basic, create_account
from support import (
    EVENT_NOT_FOUND,
    HISTORY_URL,
    bulk,
    bulk_ok,
    iso_ms,
    send,
    send_raw,
)

LIMIT_ERROR = {"errors": {"limit": ["must be between 1 and 50"]}}


def history_get(client, account: Account, **params: Any):
    return client.get(HISTORY_URL, params=params, headers=basic(account.user_key))


def history_post(client, account: Account, body: Any = None, **params: Any):
    headers = {**basic(account.user_key), "Content-Type": "application/json"}
    content = b"" if body is None else json.dumps(body).encode()
    return client.post(HISTORY_URL, params=params, content=content, headers=headers)


def timestamp_of(i: int) -> str:
    """55 distinct instants, in an order unrelated to i (the order they are sent in)."""
    minute = (i * 37) % 55
    return f"2024-05-01T10:{minute:02d}:00Z"


@pytest.fixture(scope="module")
def installs(server, client) -> tuple[Account, list[str]]:
    """An account with 55 app_install events sent in one bulk call, in shuffled time order,
    and a few events of other names; returns the install event uuids newest first."""
    account = create_account(server.db_path)
    events = [
        {
            "event": "app_install",
            "device_id": f"dev-{i}",
            "app_name": "com.example.demoapp",
            "seq": i,
            "timestamp": timestamp_of(i),
        }
        for i in range(55)
    ]
    uuids = bulk_ok(client, account, events)
    bulk_ok(
        client,
        account,
        [{"event": "app_open", "device_id": "dev-1", "timestamp": "2024-05-02T00:00:00Z"}],
    )
    newest_first = sorted(range(55), key=lambda i: timestamp_of(i), reverse=True)
    return account, [uuids[i] for i in newest_first]


def uuids_of(response, name: str = "app_install") -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [name]
    return [e["event_uuid"] for e in body[name]]


def test_default_is_the_50_newest_by_timestamp(client, installs):
    account, newest_first = installs
    assert uuids_of(history_get(client, account, event_name="app_install")) == newest_first[:50]
    assert (
        uuids_of(history_post(client, account, {"event_name": "app_install"}))
        == (newest_first[:50])
    )


def test_limit_by_query_and_by_body(client, installs):
    account, newest_first = installs
    assert (
        uuids_of(history_get(client, account, event_name="app_install", limit="2"))
        == (newest_first[:2])
    )
    assert (
        uuids_of(history_post(client, account, {"event_name": "app_install", "limit": 2}))
        == (newest_first[:2])
    )
    assert (
        uuids_of(history_post(client, account, event_name="app_install", limit="3"))
        == (newest_first[:3])
    )
    assert (
        uuids_of(history_post(client, account, {"event_name": "app_install", "limit": 1}))
        == (newest_first[:1])
    )
    assert (
        uuids_of(history_get(client, account, event_name="app_install", limit="50"))
        == (newest_first[:50])
    )


@pytest.mark.parametrize("limit", ["0", "51", "-1", "x", "2.5"])
def test_limit_outside_1_to_50_is_400_by_query(client, installs, limit):
    account, _ = installs
    response = history_get(client, account, event_name="app_install", limit=limit)
    assert (response.status_code, response.json()) == (400, LIMIT_ERROR)


def test_empty_limit_is_the_default(client, installs):
    account, newest_first = installs
    response = history_get(client, account, event_name="app_install", limit="")
    assert uuids_of(response) == newest_first[:50]


@pytest.mark.parametrize("limit", [0, 51, 100, -5, 2.5, True, "ten", [2], {"n": 2}])
def test_limit_outside_1_to_50_is_400_by_body(client, installs, limit):
    account, _ = installs
    response = history_post(client, account, {"event_name": "app_install", "limit": limit})
    assert (response.status_code, response.json()) == (400, LIMIT_ERROR)


def test_only_the_asked_name(client, installs):
    account, _ = installs
    response = history_get(client, account, event_name="app_open")
    assert len(uuids_of(response, "app_open")) == 1
    assert response.json()["app_open"][0]["device_id"] == "dev-1"


@pytest.mark.parametrize(
    "request_kind", ["get_without", "get_empty", "get_blank", "post_empty_body", "post_null"]
)
def test_missing_event_name_is_400(client, installs, request_kind):
    account, _ = installs
    response = {
        "get_without": lambda: history_get(client, account),
        "get_empty": lambda: history_get(client, account, event_name=""),
        "get_blank": lambda: history_get(client, account, event_name="  "),
        "post_empty_body": lambda: history_post(client, account, {}),
        "post_null": lambda: history_post(client, account, {"event_name": None}),
    }[request_kind]()
    assert response.status_code == 400
    assert response.json() == {"errors": {"event_name": ["can't be blank"]}}


@pytest.mark.parametrize("name", ["a.b", "has space", "12345", "x" * 65])
def test_invalid_event_name_is_422(client, installs, name):
    account, _ = installs
    for response in (
        history_get(client, account, event_name=name),
        history_post(client, account, {"event_name": name}),
    ):
        assert response.status_code == 422
        assert response.json() == {"errors": {"event_name": ["is not valid"]}}


def test_unknown_event_name_is_404(client, installs):
    account, _ = installs
    response = history_get(client, account, event_name="never_sent")
    assert (response.status_code, response.json()) == (404, EVENT_NOT_FOUND)


def test_post_body_that_is_not_an_object_is_400(client, installs):
    account, _ = installs
    headers = {**basic(account.user_key), "Content-Type": "application/json"}
    for content in (b"[1, 2]", b"{not json", b'"app_install"'):
        response = client.post(HISTORY_URL, content=content, headers=headers)
        assert response.status_code == 400, content
        assert "errors" in response.json()


def test_event_fields_are_as_sent_plus_what_the_store_added(client, account):
    sent = {
        "event": "app_install",
        "event_uuid": "aaaa1111-bbbb-4222-8ccc-3333dddd4444",
        "device_id": "abcd1234-5678-90ef-ghij-1234567890kl",
        "app_name": "com.example.demoapp",
        "app_version": "5.0.0 (42)",
        "enable_push": False,
        "enable_inapp": True,
        "bsft_sdk_version": "5.0.0",
        "app_installed_at": "2025-09-17T10:26:54.687Z",
        "timestamp": "2025-09-17T10:26:54.688Z",
        "user_agent": "Dalvik/2.1.0 (Linux; U; Android 16; Pixel 8 Build/ABC123)",
    }
    send(client, account, sent)
    row, _ = account.stored(sent["event_uuid"])
    response = history_post(client, account, {"event_name": "app_install", "limit": 2})
    assert response.status_code == 200
    assert response.json() == {
        "app_install": [
            {
                **sent,
                "_bsft_ts": iso_ms(row["received_ms"]),
                "account_uuid": account.uuid,
                "timestamp_epoch": 1758104814,
                "user_uuid": row["user_uuid"],
            }
        ]
    }


def test_newest_first_is_by_timestamp_not_by_arrival(client, account):
    sent = {}
    for t in ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", "2024-01-01T00:00:00Z"):
        sent[t] = send(client, account, {"event": "purchase", "customer_id": "c", "timestamp": t})
    events = history_get(client, account, event_name="purchase").json()["purchase"]
    assert [e["timestamp"] for e in events] == [
        "2024-01-03T00:00:00Z",
        "2024-01-02T00:00:00Z",
        "2024-01-01T00:00:00Z",
    ]
    assert [e["event_uuid"] for e in events] == [
        sent["2024-01-03T00:00:00Z"],
        sent["2024-01-02T00:00:00Z"],
        sent["2024-01-01T00:00:00Z"],
    ]
    assert [type(e["timestamp_epoch"]) for e in events] == [int, int, int]


def test_rejected_events_never_appear(client, account):
    # Only rejected events of this name: not found.
    assert send_raw(client, account, {"event": "signup", "email": "not-an-email"}).status_code == (
        400
    )
    response = history_get(client, account, event_name="signup")
    assert (response.status_code, response.json()) == (404, EVENT_NOT_FOUND)
    good = send(client, account, {"event": "signup", "customer_id": "c-1", "plan": "gold"})
    # Rejected by the store (attribute type) and in a bulk call (no identifier).
    assert send_raw(
        client, account, {"event": "signup", "customer_id": "c", "plan": 1}
    ).status_code == (400)
    response = bulk(
        client,
        account.event_key,
        [{"event": "signup"}, {"event": "signup", "customer_id": "c-2", "plan": ["x"]}],
    )
    assert response.status_code == 400
    assert response.json()["count"] == 0
    assert uuids_of(history_get(client, account, event_name="signup"), "signup") == [good]
