"""GET /api/v1/customers/search, /api/v1/customers/{uuid}/events and what /customers/{uuid}
explains, over HTTP against a real server on both backends."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import basic, create_account
from support import (
    CUSTOMER_NOT_FOUND,
    CUSTOMERS_URL,
    ISO_MS_RE,
    UUID_RE,
    bulk_ok,
    customer_uuid,
    md5_email,
    send,
    show_events,
    unique,
)

SEARCH_URL = f"{CUSTOMERS_URL}/search"


def day(n: int, hour: int = 12) -> str:
    return f"2024-03-{n:02d}T{hour:02d}:00:00.000Z"


def search(client: httpx.Client, account: Any, **params: Any) -> httpx.Response:
    return client.get(SEARCH_URL, params=params, headers=basic(account.user_key))


def found(client: httpx.Client, account: Any, **params: Any) -> dict[str, Any]:
    response = search(client, account, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"customers", "next"}
    return body


def ids_found(client: httpx.Client, account: Any, q: str) -> list[str | None]:
    return [c["customer_id"] for c in found(client, account, q=q)["customers"]]


def every_page(client: httpx.Client, url: str, account: Any, key: str, param: str, **params):
    pages = []
    while True:
        response = client.get(url, params=params, headers=basic(account.user_key))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        if body["next"] is None:
            return pages
        params[param] = body["next"]


def events_of(client: httpx.Client, account: Any, uuid_: str, **params: Any) -> httpx.Response:
    return client.get(
        f"{CUSTOMERS_URL}/{uuid_}/events", params=params, headers=basic(account.user_key)
    )


# -- search -----------------------------------------------------------------------------------


def test_search_by_a_prefix_of_each_identifier(client, account):
    bulk_ok(
        client,
        account,
        [
            {"event": "identify", "customer_id": "CUST-1", "email": "Jane.Doe@Example.com",
             "timestamp": day(1)},
            {"event": "view", "device_id": "dev-77", "timestamp": day(2)},
            {"event": "view", "cookie": "ck-%_x", "timestamp": day(3)},
        ],
    )  # fmt: skip
    assert ids_found(client, account, "CUST") == ["CUST-1"]
    assert ids_found(client, account, "cust") == []
    assert ids_found(client, account, "JANE.D") == ["CUST-1"]
    assert ids_found(client, account, "jane.doe@example.com") == ["CUST-1"]
    assert ids_found(client, account, "Doe") == []
    assert ids_found(client, account, "ck-%") == [None]
    assert ids_found(client, account, "ck-%x") == []
    assert ids_found(client, account, "nothing") == []
    (device,) = found(client, account, q=" dev-7 ")["customers"]
    assert device == {
        "uuid": customer_uuid(client, account, device_id="dev-77"),
        "customer_id": None,
        "email": None,
        "matched": {"kind": "device_id", "value": "dev-77"},
        "last_seen_at": day(2),
        "created_at": device["created_at"],
        "updated_at": device["updated_at"],
    }
    assert ISO_MS_RE.fullmatch(device["created_at"])
    (jane,) = found(client, account, q="JANE")["customers"]
    assert jane["matched"] == {"kind": "email", "value": "jane.doe@example.com"}
    assert jane["email"] == "jane.doe@example.com"


def test_every_customer_newest_activity_first_in_pages(client, account):
    other = create_account(account.db_path)
    for n, d in enumerate([3, 7, 1, 5, 2]):
        send(client, account, {"event": "view", "customer_id": f"p{n}", "timestamp": day(d)})
    send(client, other, {"event": "view", "customer_id": "p-other"})
    # p2 comes back on day 9.
    send(client, account, {"event": "view", "customer_id": "p2", "timestamp": day(9)})
    pages = every_page(client, SEARCH_URL, account, "customers", "cursor", limit=2)
    assert [[c["customer_id"] for c in page] for page in pages] == [
        ["p2", "p1"],
        ["p3", "p0"],
        ["p4"],
    ]
    assert pages[0][0]["last_seen_at"] == day(9)
    # A blank q is no filter; the same pages by prefix.
    assert [c["customer_id"] for c in found(client, account, q="", limit=1)["customers"]] == ["p2"]
    by_prefix = every_page(client, SEARCH_URL, account, "customers", "cursor", q="p", limit=3)
    assert [c["customer_id"] for page in by_prefix for c in page] == ["p2", "p1", "p3", "p0", "p4"]
    # One account never sees another's.
    assert [c["customer_id"] for c in found(client, other)["customers"]] == ["p-other"]
    assert found(client, other, q="p")["customers"][0]["customer_id"] == "p-other"
    assert ids_found(client, other, "p0") == []


def test_a_page_of_exactly_limit_customers_ends_with_no_next(client, account):
    for n in range(3):
        send(client, account, {"event": "view", "cookie": unique("full"), "timestamp": day(n + 1)})
    assert found(client, account, limit=3)["next"] is None
    first = found(client, account, limit=2)
    assert first["next"] is not None
    rest = found(client, account, limit=2, cursor=first["next"])
    assert len(rest["customers"]) == 1 and rest["next"] is None


def test_search_limits_and_cursors_are_checked(client, account):
    for limit in ("0", "201", "-1", "x", "2.5"):
        response = search(client, account, limit=limit)
        assert response.status_code == 400, limit
        assert response.json() == {"errors": {"limit": ["must be between 1 and 200"]}}
    assert search(client, account, limit="200").status_code == 200
    for cursor in ("nope", "MS4xLjI=", "%%%", "MS4tMS4y", "A" * 100):
        response = search(client, account, cursor=cursor)
        assert response.status_code == 400, cursor
        assert list(response.json()["errors"]) == ["cursor"]
    response = search(client, account, q="x" * 257)
    assert response.status_code == 400 and list(response.json()["errors"]) == ["q"]
    # A NUL never reaches the search: the query string is refused as a whole.
    assert search(client, account, q="a\x00b").status_code == 400


def test_search_and_timeline_need_the_user_key(client, account):
    any_uuid = "01900000-0000-7000-8000-000000000000"
    for url in (SEARCH_URL, f"{CUSTOMERS_URL}/{any_uuid}/events"):
        assert client.get(url).status_code == 401
        assert client.get(url, headers=basic(account.event_key)).status_code == 403


# -- the paged timeline -----------------------------------------------------------------------


def test_timeline_pages_newest_first_in_the_show_events_shape(client, account):
    cookie = unique("tl")
    stamps = [day(1), day(4), day(2), day(4), day(3), day(4), day(1, 6)]
    uuids = bulk_ok(client, account, [{"event": "view", "cookie": cookie, "timestamp": t,
                                       "n": i} for i, t in enumerate(stamps)])  # fmt: skip
    assert len(uuids) == len(stamps)
    who = customer_uuid(client, account, cookie=cookie)
    pages = every_page(client, f"{CUSTOMERS_URL}/{who}/events", account, "events", "before",
                       limit=3)  # fmt: skip
    assert [len(page) for page in pages] == [3, 3, 1]
    events = [e for page in pages for e in page]
    assert sorted(e["event_uuid"] for e in events) == sorted(uuids)
    assert [e["timestamp"][:13] for e in events] == [
        "2024-03-04T12", "2024-03-04T12", "2024-03-04T12", "2024-03-03T12", "2024-03-02T12",
        "2024-03-01T12", "2024-03-01T06",
    ]  # fmt: skip
    # The same documents as show_events, newest first instead of oldest.
    response = show_events(client, account, who)
    assert response.status_code == 200
    assert sorted(response.json(), key=lambda e: e["event_uuid"]) == sorted(
        events, key=lambda e: e["event_uuid"]
    )
    response = events_of(client, account, who)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"uuid", "events", "next"} and body["uuid"] == who
    assert body["next"] is None and len(body["events"]) == 7


def test_timeline_is_not_held_to_show_events_hourly_calls(client, account):
    send(client, account, {"event": "view", "cookie": "busy"})
    who = customer_uuid(client, account, cookie="busy")
    for _ in range(12):
        assert events_of(client, account, who).status_code == 200
    # show_events keeps its own count: all 10 of its calls remain.
    for _ in range(10):
        assert show_events(client, account, who).status_code == 200
    assert show_events(client, account, who).status_code == 429
    assert events_of(client, account, who).status_code == 200


def test_a_merged_away_uuid_answers_with_the_merged_timeline(client, account):
    cookie = unique("anon")
    send(client, account, {"event": "view", "cookie": cookie, "timestamp": day(1)})
    anonymous = customer_uuid(client, account, cookie=cookie)
    send(client, account, {"event": "view", "device_id": cookie + "-d", "timestamp": day(2)})
    device = customer_uuid(client, account, device_id=cookie + "-d")
    identify = {"event": "identify", "customer_id": cookie + "-id", "cookie": cookie}
    send(client, account, {**identify, "device_id": cookie + "-d", "timestamp": day(3)})
    known = customer_uuid(client, account, customer_id=cookie + "-id")
    for asked in (anonymous, device, known, anonymous.upper()):
        body = events_of(client, account, asked).json()
        assert body["uuid"] == known
        assert [e["timestamp"] for e in body["events"]] == [day(3), day(2), day(1)]
        assert {e["user_uuid"] for e in body["events"]} == {known}
    # Searching finds the live profile only.
    assert [c["uuid"] for c in found(client, account, q=cookie)["customers"]] == [known]


def test_timeline_errors(client, account):
    send(client, account, {"event": "view", "cookie": "errs"})
    who = customer_uuid(client, account, cookie="errs")
    other = create_account(account.db_path)
    missing = "01900000-0000-7000-8000-000000000000"
    for uuid_, owner in ((missing, account), (who, other)):
        response = events_of(client, owner, uuid_)
        assert (response.status_code, response.json()) == (404, CUSTOMER_NOT_FOUND)
    for limit in ("0", "201", "many"):
        response = events_of(client, account, who, limit=limit)
        assert response.status_code == 400
        assert response.json() == {"errors": {"limit": ["must be between 1 and 200"]}}
    for before in ("x", "MS4xLjI=", "MTIzNDU"):
        response = events_of(client, account, who, before=before)
        assert response.status_code == 400 and list(response.json()["errors"]) == ["before"]


# -- what the profile explains ----------------------------------------------------------------


def test_the_profile_lists_identifiers_merges_and_conflicts(client, account):
    tag = unique("why")
    send(client, account, {"event": "view", "cookie": f"{tag}-ck", "timestamp": day(1)})
    anonymous = customer_uuid(client, account, cookie=f"{tag}-ck")
    send(client, account, {"event": "identify", "customer_id": f"{tag}-1", "cookie": f"{tag}-ck",
                           "email": f"{tag}@x.io", "timestamp": day(2)})  # fmt: skip
    one = customer_uuid(client, account, customer_id=f"{tag}-1")
    # Another customer_id with the same email: never merged; a conflict on both profiles.
    conflict_event = send(
        client, account, {"event": "view", "customer_id": f"{tag}-2", "email": f"{tag}@x.io"}
    )
    two = customer_uuid(client, account, customer_id=f"{tag}-2")
    response = client.get(f"{CUSTOMERS_URL}/{one}", headers=basic(account.user_key))
    assert response.status_code == 200
    profile = response.json()["customer"]
    kinds = {i["kind"]: i["value"] for i in profile["identifiers"]}
    if anonymous == one:
        # The anonymous profile was taken over rather than merged.
        assert profile["merged_profiles"] == []
    else:
        assert [m["uuid"] for m in profile["merged_profiles"]] == [anonymous]
        assert ISO_MS_RE.fullmatch(profile["merged_profiles"][0]["merged_at"])
    assert kinds == {
        "cookie": f"{tag}-ck",
        "customer_id": f"{tag}-1",
        "email": f"{tag}@x.io",
        "email_hash": md5_email(f"{tag}@x.io"),
    }
    assert all(ISO_MS_RE.fullmatch(i["first_seen_at"]) for i in profile["identifiers"])
    assert profile["identifiers"][0]["kind"] == "cookie"
    assert profile["last_seen_at"] == day(2)
    (conflict,) = profile["conflicts"]
    assert conflict == {
        "kind": "email",
        "value": f"{tag}@x.io",
        "event_uuid": conflict_event,
        "at": conflict["at"],
        "customer_uuid": two,
        "holder_uuid": one,
    }
    other = client.get(f"{CUSTOMERS_URL}/{two}", headers=basic(account.user_key)).json()
    assert other["customer"]["conflicts"] == [conflict]
    assert UUID_RE.fullmatch(two) and two != one
