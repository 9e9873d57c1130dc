"""Who may read: every read endpoint wants the user key (the event key gets 403, no or an unknown
key 401), and one account never sees another's customers, identifiers or event names: they
answer exactly as if they did not exist."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Account, basic, create_account
from support import (
    CUSTOMER_NOT_FOUND,
    CUSTOMERS_URL,
    EVENT_NOT_FOUND,
    HISTORY_URL,
    NOT_AUTHORIZED,
    PERMISSION_DENIED,
    SHOW_EVENTS_URL,
    SUMMARY_URL,
    customer,
    find_customer,
    md5_email,
    send,
    show_events,
    summary,
)


@dataclass
class Tenants:
    a: Account
    b: Account
    a_uuid: str
    identifiers: dict[str, str]


@pytest.fixture(scope="module")
def tenants(server, client) -> Tenants:
    a, b = create_account(server.db_path), create_account(server.db_path)
    identifiers = {
        "customer_id": "shared-1",
        "email": "ann@example.com",
        "device_id": "dev-a",
        "cookie": "ck-a",
    }
    send(
        client,
        a,
        {"event": "purchase_a", **identifiers, "timestamp": "2024-04-01T10:00:00Z"},
    )
    send(client, b, {"event": "view", "cookie": "ck-b", "timestamp": "2024-04-01T11:00:00Z"})
    return Tenants(a, b, customer(client, a, cookie="ck-a")["uuid"], identifiers)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def read_requests(t: Tenants) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", CUSTOMERS_URL, {"cookie": "ck-a"}),
        ("GET", f"{CUSTOMERS_URL}/{t.a_uuid}", {}),
        ("GET", SHOW_EVENTS_URL, {"uuid": t.a_uuid}),
        ("GET", f"{CUSTOMERS_URL}/search", {"q": "ck-a"}),
        ("GET", f"{CUSTOMERS_URL}/{t.a_uuid}/events", {}),
        ("GET", HISTORY_URL, {"event_name": "purchase_a"}),
        ("POST", HISTORY_URL, {"event_name": "purchase_a"}),
        ("GET", SUMMARY_URL, {}),
        ("POST", SUMMARY_URL, {}),
    ]


ENDPOINT_IDS = [
    "customers",
    "customer_by_uuid",
    "show_events",
    "customer_search",
    "customer_events",
    "history_get",
    "history_post",
    "summary_get",
    "summary_post",
]


@pytest.mark.parametrize("index", range(len(ENDPOINT_IDS)), ids=ENDPOINT_IDS)
def test_event_key_is_403_on_every_read_endpoint(client, tenants, index):
    method, url, params = read_requests(tenants)[index]
    for header in (basic(tenants.a.event_key), {"Authorization": b64(f"{tenants.a.event_key}:")}):
        response = client.request(method, url, params=params, headers=header)
        assert response.status_code == 403
        assert response.json() == PERMISSION_DENIED
    # Also when the request is otherwise wrong: the key is checked first.
    response = client.request(
        method, url, params={"limit": "0"}, headers=basic(tenants.a.event_key)
    )
    assert (response.status_code, response.json()) == (403, PERMISSION_DENIED)


UNAUTHORIZED = {
    "no_header": None,
    "unknown_key": "Basic " + b64(f"{uuid.uuid4().hex}:"),
    "garbage": "Basic !!!",
    "bearer": "Bearer something",
}


@pytest.mark.parametrize("index", range(len(ENDPOINT_IDS)), ids=ENDPOINT_IDS)
@pytest.mark.parametrize("case", list(UNAUTHORIZED))
def test_no_or_unknown_key_is_401_on_every_read_endpoint(client, tenants, index, case):
    method, url, params = read_requests(tenants)[index]
    header = UNAUTHORIZED[case]
    headers = {} if header is None else {"Authorization": header}
    response = client.request(method, url, params=params, headers=headers)
    assert response.status_code == 401
    assert response.json() == NOT_AUTHORIZED


def test_user_key_as_password_is_401(client, tenants):
    response = client.get(
        CUSTOMERS_URL,
        params={"cookie": "ck-a"},
        headers={"Authorization": "Basic " + b64(f":{tenants.a.user_key}")},
    )
    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)


# -- tenant isolation -----------------------------------------------------------------------


def test_the_owner_reads_its_own_data(client, tenants):
    assert customer(client, tenants.a, customer_id="shared-1")["uuid"] == tenants.a_uuid
    response = client.get(
        HISTORY_URL, params={"event_name": "purchase_a"}, headers=basic(tenants.a.user_key)
    )
    assert response.status_code == 200
    assert [e["account_uuid"] for e in response.json()["purchase_a"]] == [tenants.a.uuid]


def test_another_accounts_customer_uuid_is_not_found(client, tenants):
    headers = basic(tenants.b.user_key)
    theirs = client.get(f"{CUSTOMERS_URL}/{tenants.a_uuid}", headers=headers)
    nobodys = client.get(f"{CUSTOMERS_URL}/{uuid.uuid4()}", headers=headers)
    assert (theirs.status_code, theirs.json()) == (404, CUSTOMER_NOT_FOUND)
    assert (nobodys.status_code, nobodys.json()) == (404, CUSTOMER_NOT_FOUND)
    assert theirs.headers["content-type"] == nobodys.headers["content-type"]


def test_another_accounts_identifiers_are_not_found(client, tenants):
    identifiers = dict(tenants.identifiers)
    identifiers["email_hash"] = md5_email(identifiers["email"])
    for kind, value in identifiers.items():
        response = find_customer(client, tenants.b, **{kind: value})
        assert (response.status_code, response.json()) == (404, CUSTOMER_NOT_FOUND), kind


def test_another_accounts_customer_has_no_timeline(client, tenants):
    theirs = show_events(client, tenants.b, tenants.a_uuid)
    nobodys = show_events(client, tenants.b, str(uuid.uuid4()))
    assert (theirs.status_code, theirs.json()) == (404, CUSTOMER_NOT_FOUND)
    assert (nobodys.status_code, nobodys.json()) == (404, CUSTOMER_NOT_FOUND)


def test_another_accounts_event_name_has_no_history(client, tenants):
    headers = basic(tenants.b.user_key)
    for method in ("GET", "POST"):
        theirs = client.request(
            method, HISTORY_URL, params={"event_name": "purchase_a"}, headers=headers
        )
        nobodys = client.request(
            method, HISTORY_URL, params={"event_name": "never_sent"}, headers=headers
        )
        assert (theirs.status_code, theirs.json()) == (404, EVENT_NOT_FOUND)
        assert (nobodys.status_code, nobodys.json()) == (404, EVENT_NOT_FOUND)


def test_summary_counts_only_the_accounts_own_events(client, tenants):
    params = {"timestamp_start": "2024-04-01T00:00:00Z", "timestamp_end": "2024-04-01T23:59:59Z"}
    mine = summary(client, tenants.b, **params)
    assert mine["events_chart_stats"][0]["events"] == {"view": [1]}
    assert list(mine["stats"]) == ["view"]
    theirs = summary(client, tenants.a, **params)
    assert theirs["events_chart_stats"][0]["events"] == {"purchase_a": [1]}
    assert list(theirs["stats"]) == ["purchase_a"]


def test_the_same_identifiers_in_two_accounts_are_two_customers(client, server):
    a, b = create_account(server.db_path), create_account(server.db_path)
    body = {"event": "identify", "customer_id": "c-1", "email": "same@example.com", "name": "A"}
    send(client, a, body)
    send(client, b, {**body, "name": "B"})
    in_a, in_b = customer(client, a, customer_id="c-1"), customer(client, b, customer_id="c-1")
    assert in_a["uuid"] != in_b["uuid"]
    assert (in_a["name"], in_b["name"]) == ("A", "B")
    assert customer(client, a, email="same@example.com")["uuid"] == in_a["uuid"]
    response = client.get(f"{CUSTOMERS_URL}/{in_a['uuid']}", headers=basic(b.user_key))
    assert (response.status_code, response.json()) == (404, CUSTOMER_NOT_FOUND)
