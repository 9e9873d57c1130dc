"""Identity resolution as a client sees it: events sent over HTTP, customers read back through
GET /api/v1/customers, /api/v1/customers/{uuid} and show_events, and the database checked
read-only for what the API does not show (merges, conflicts, user_uuid on every row)."""

from __future__ import annotations

import json
import uuid

from conftest import basic, query
from support import (
    CUSTOMER_NOT_FOUND,
    CUSTOMERS_URL,
    ISO_MS_RE,
    UUID_RE,
    bulk_ok,
    customer,
    customer_uuid,
    find_customer,
    iso_ms,
    md5_email,
    send,
    send_raw,
    timeline,
    utc_day,
)


def customer_rows(account):
    return query(
        account.db_path,
        "SELECT uuid, customer_id, email, merged_into FROM customers WHERE account_id = ? "
        "ORDER BY id",
        [account.id],
    )


def user_uuid_of(account, event_uuid: str) -> str:
    row, _ = account.stored(event_uuid)
    return str(row["user_uuid"])


# -- a new customer, and finding it ---------------------------------------------------------


def test_first_event_creates_a_customer_found_by_its_identifier(client, account):
    event_uuid = send(client, account, {"event": "view", "cookie": "ck-1"})
    row, _ = account.stored(event_uuid)
    assert UUID_RE.fullmatch(row["user_uuid"])
    document = customer(client, account, cookie="ck-1")
    assert document == {
        "uuid": row["user_uuid"],
        "customer_id": None,
        "email": None,
        "emails": [],
        "device_ids": [],
        "cookies": ["ck-1"],
        "subscription_groups": {},
        "attributes": {},
        "created_at": iso_ms(row["received_ms"]),
        "updated_at": iso_ms(row["received_ms"]),
    }
    assert [r["uuid"] for r in customer_rows(account)] == [row["user_uuid"]]


def test_customer_by_uuid_is_the_same_document(client, account):
    send(
        client,
        account,
        {"event": "identify", "customer_id": "c-1", "email": "ann@example.com", "age": 31},
    )
    by_identifier = customer(client, account, customer_id="c-1")
    response = client.get(
        f"{CUSTOMERS_URL}/{by_identifier['uuid']}", headers=basic(account.user_key)
    )
    assert response.status_code == 200
    # The same profile, and by uuid what explains it (tests/http/test_customer_search.py).
    by_uuid = response.json()["customer"]
    explains = {"last_seen_at", "identifiers", "merged_profiles", "conflicts"}
    assert set(by_uuid) == set(by_identifier) | explains
    assert {k: v for k, v in by_uuid.items() if k not in explains} == by_identifier
    assert by_identifier["age"] == 31
    assert ISO_MS_RE.fullmatch(by_identifier["created_at"])
    # A uuid in upper case names the same customer.
    response = client.get(
        f"{CUSTOMERS_URL}/{by_identifier['uuid'].upper()}", headers=basic(account.user_key)
    )
    assert response.json() == {"customer": by_uuid}


def test_every_identifier_kind_finds_the_customer(client, account):
    send(
        client,
        account,
        {
            "event": "identify",
            "customer_id": "c-9",
            "email": "Jane.Doe@Example.com",
            "device_id": "dev-9",
            "cookie": "ck-9",
        },
    )
    expected = customer(client, account, customer_id="c-9")
    assert expected["customer_id"] == "c-9"
    assert expected["email"] == "jane.doe@example.com"
    assert expected["device_ids"] == ["dev-9"]
    assert expected["cookies"] == ["ck-9"]
    for identifier in (
        {"email": "jane.doe@example.com"},
        {"email": "JANE.DOE@EXAMPLE.COM"},
        {"email_hash": md5_email("jane.doe@example.com")},
        {"email_hash": md5_email("jane.doe@example.com").upper()},
        {"device_id": "dev-9"},
        {"cookie": "ck-9"},
    ):
        assert customer(client, account, **identifier) == expected, identifier


def test_unknown_customer_is_404_and_no_identifier_is_400(client, account):
    send(client, account, {"event": "view", "cookie": "ck-1"})
    for identifier in (
        {"cookie": "ck-2"},
        {"customer_id": "ck-1"},
        {"email": "nobody@example.com"},
        {"device_id": "ck-1"},
    ):
        response = find_customer(client, account, **identifier)
        assert response.status_code == 404, identifier
        assert response.json() == CUSTOMER_NOT_FOUND
    response = client.get(f"{CUSTOMERS_URL}/{uuid.uuid4()}", headers=basic(account.user_key))
    assert (response.status_code, response.json()) == (404, CUSTOMER_NOT_FOUND)
    response = find_customer(client, account)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["base"]


def test_numeric_customer_id_is_found_as_text(client, account):
    event_uuid = send(client, account, {"event": "view", "customer_id": 812123})
    assert customer(client, account, customer_id="812123")["uuid"] == user_uuid_of(
        account, event_uuid
    )


# -- resolution -----------------------------------------------------------------------------


def test_same_cookie_twice_is_the_same_customer(client, account):
    first = send(client, account, {"event": "view", "cookie": "ck-1"})
    second = send(client, account, {"event": "view", "cookie": "ck-1"})
    other = send(client, account, {"event": "view", "cookie": "ck-2"})
    assert user_uuid_of(account, first) == user_uuid_of(account, second)
    assert user_uuid_of(account, other) != user_uuid_of(account, first)
    assert len(customer_rows(account)) == 2


def test_anonymous_cookie_profile_then_identify_is_one_customer(client, account):
    view = send(
        client, account, {"event": "view", "cookie": "ck-1", "timestamp": "2024-01-01T00:00:00Z"}
    )
    identify = send(
        client,
        account,
        {
            "event": "identify",
            "cookie": "ck-1",
            "customer_id": "c-42",
            "timestamp": "2024-01-02T00:00:00Z",
        },
    )
    (row,) = customer_rows(account)
    assert (row["customer_id"], row["merged_into"]) == ("c-42", None)
    document = customer(client, account, customer_id="c-42")
    assert document["uuid"] == row["uuid"] == customer_uuid(client, account, cookie="ck-1")
    assert document["cookies"] == ["ck-1"]
    events = timeline(client, account, row["uuid"])
    assert [e["event_uuid"] for e in events] == [view, identify]
    assert {e["user_uuid"] for e in events} == {row["uuid"]}


def test_merged_away_profile_answers_with_the_merged_timeline(client, account):
    anonymous = send(
        client, account, {"event": "view", "cookie": "ck-1", "timestamp": "2024-01-01T00:00:00Z"}
    )
    known = send(
        client,
        account,
        {"event": "signup", "customer_id": "c-42", "timestamp": "2024-01-02T00:00:00Z"},
    )
    loser, winner = user_uuid_of(account, anonymous), user_uuid_of(account, known)
    assert loser != winner
    tying = send(
        client,
        account,
        {
            "event": "identify",
            "customer_id": "c-42",
            "cookie": "ck-1",
            "timestamp": "2024-01-03T00:00:00Z",
        },
    )
    # Every event of both profiles now belongs to the winner.
    assert {user_uuid_of(account, e) for e in (anonymous, known, tying)} == {winner}
    rows = {r["uuid"]: r for r in customer_rows(account)}
    assert rows[loser]["merged_into"] == winner
    assert rows[winner]["merged_into"] is None
    expected = [anonymous, known, tying]
    for asked in (winner, loser):
        events = timeline(client, account, asked)
        assert [e["event_uuid"] for e in events] == expected
        assert {e["user_uuid"] for e in events} == {winner}
        assert {e["_bsft_type"]["parent"] for e in events} == {winner}
    assert customer_uuid(client, account, cookie="ck-1") == winner
    response = client.get(f"{CUSTOMERS_URL}/{loser}", headers=basic(account.user_key))
    assert response.status_code == 200
    assert response.json()["customer"]["uuid"] == winner
    assert response.json()["customer"]["cookies"] == ["ck-1"]


def test_email_is_matched_case_insensitively(client, account):
    first = send(client, account, {"event": "view", "email": "Jane.Doe@Example.COM"})
    second = send(client, account, {"event": "view", "email": "jane.doe@example.com"})
    assert user_uuid_of(account, first) == user_uuid_of(account, second)
    assert len(customer_rows(account)) == 1
    assert customer(client, account, email="JANE.doe@example.com")["email"] == (
        "jane.doe@example.com"
    )


def test_email_hash_alone_matches_the_email_customer(client, account):
    by_email = send(client, account, {"event": "view", "email": "Jane@Example.com"})
    by_hash = send(client, account, {"event": "view", "email_hash": md5_email("jane@example.com")})
    by_upper_hash = send(
        client, account, {"event": "view", "email_hash": md5_email("jane@example.com").upper()}
    )
    assert len({user_uuid_of(account, e) for e in (by_email, by_hash, by_upper_hash)}) == 1
    assert len(customer_rows(account)) == 1


def test_retailer_customer_id_is_the_customer_id(client, account):
    first = send(client, account, {"event": "view", "retailer_customer_id": "r-9"})
    second = send(client, account, {"event": "view", "customer_id": "r-9"})
    assert user_uuid_of(account, first) == user_uuid_of(account, second)
    document = customer(client, account, customer_id="r-9")
    assert document["customer_id"] == "r-9"
    assert document["uuid"] == user_uuid_of(account, first)


def test_device_id_profile_is_merged_into_the_email_profile(client, account):
    device = send(client, account, {"event": "app_open", "device_id": "dev-1"})
    email = send(client, account, {"event": "view", "email": "jane@example.com"})
    device_uuid, email_uuid = user_uuid_of(account, device), user_uuid_of(account, email)
    assert device_uuid != email_uuid
    both = send(
        client, account, {"event": "view", "email": "jane@example.com", "device_id": "dev-1"}
    )
    assert {user_uuid_of(account, e) for e in (device, email, both)} == {email_uuid}
    document = customer(client, account, device_id="dev-1")
    assert document["uuid"] == email_uuid
    assert (document["email"], document["device_ids"]) == ("jane@example.com", ["dev-1"])
    rows = {r["uuid"]: r["merged_into"] for r in customer_rows(account)}
    assert rows == {device_uuid: email_uuid, email_uuid: None}


def test_a_chain_of_merges_keeps_every_old_uuid_answering(client, account):
    cookie = send(client, account, {"event": "view", "cookie": "ck-1"})
    device = send(client, account, {"event": "view", "device_id": "dev-1"})
    send(client, account, {"event": "view", "device_id": "dev-1", "cookie": "ck-1"})
    known = send(client, account, {"event": "view", "customer_id": "c-1"})
    send(client, account, {"event": "view", "customer_id": "c-1", "device_id": "dev-1"})
    winner = user_uuid_of(account, known)
    for old in (user_uuid_of(account, cookie), user_uuid_of(account, device)):
        response = client.get(f"{CUSTOMERS_URL}/{old}", headers=basic(account.user_key))
        assert response.json()["customer"]["uuid"] == winner
    assert {r["user_uuid"] for r in account.events()} == {winner}
    rows = customer_rows(account)
    assert [r["merged_into"] for r in rows if r["uuid"] != winner] == [winner, winner]


def test_two_customer_ids_tied_by_an_event_are_not_merged(client, account):
    one = send(
        client,
        account,
        {"event": "identify", "customer_id": "1", "email": "one@example.com", "tier": "gold"},
    )
    tying = send(
        client, account, {"event": "purchase", "customer_id": "2", "email": "one@example.com"}
    )
    one_uuid, two_uuid = user_uuid_of(account, one), user_uuid_of(account, tying)
    assert one_uuid != two_uuid
    assert customer(client, account, customer_id="2")["uuid"] == two_uuid
    # Customer 1 keeps its email; the email still finds customer 1 only.
    by_email = customer(client, account, email="one@example.com")
    assert (by_email["uuid"], by_email["customer_id"]) == (one_uuid, "1")
    assert by_email["email"] == "one@example.com"
    two = customer(client, account, customer_id="2")
    assert two["email"] is None
    assert {r["uuid"]: r["merged_into"] for r in customer_rows(account)} == {
        one_uuid: None,
        two_uuid: None,
    }
    conflicts = query(
        account.db_path,
        "SELECT event_uuid, customer_uuid, other_uuid, kind, value FROM identity_conflicts "
        "WHERE account_id = ?",
        [account.id],
    )
    assert [tuple(c) for c in conflicts] == [
        (tying, two_uuid, one_uuid, "email", "one@example.com")
    ]


def test_identifiers_resolve_within_one_bulk_call(client, account):
    uuids = bulk_ok(
        client,
        account,
        [
            {"event": "view", "cookie": "ck-1"},
            {"event": "view", "customer_id": "c-1"},
            {"event": "identify", "customer_id": "c-1", "cookie": "ck-1"},
            {"event": "view", "cookie": "ck-1"},
        ],
    )
    assert len({user_uuid_of(account, e) for e in uuids}) == 1
    live = [r for r in customer_rows(account) if r["merged_into"] is None]
    assert [r["uuid"] for r in live] == [user_uuid_of(account, uuids[0])]


# -- profile attributes and subscriptions ---------------------------------------------------------


def test_identify_updates_profile_attributes_other_events_do_not(client, account):
    send(
        client,
        account,
        {"event": "identify", "customer_id": "c-1", "first_name": "Ann", "plan": "gold"},
    )
    assert customer(client, account, customer_id="c-1")["first_name"] == "Ann"
    send(client, account, {"event": "view", "customer_id": "c-1", "first_name": "Bob"})
    after_view = customer(client, account, customer_id="c-1")
    assert (after_view["first_name"], after_view["plan"]) == ("Ann", "gold")
    send(client, account, {"event": "identify", "customer_id": "c-1", "first_name": "Bea"})
    after_identify = customer(client, account, customer_id="c-1")
    assert (after_identify["first_name"], after_identify["plan"]) == ("Bea", "gold")
    assert "event" not in after_identify and "event_uuid" not in after_identify


def test_identify_with_a_new_email_updates_the_profile_and_keeps_the_old_one(client, account):
    """The issue's third report: the old email stayed on the profile and updated_at did not
    move; the new email found the profile, but nothing showed it."""
    send(client, account, {"event": "identify", "customer_id": "c-1", "email": "ann@old.example"})
    before = customer(client, account, customer_id="c-1")
    assert (before["email"], before["emails"]) == ("ann@old.example", ["ann@old.example"])
    send(client, account, {"event": "identify", "customer_id": "c-1", "email": "Ann@New.example"})
    after = customer(client, account, customer_id="c-1")
    assert after["email"] == "ann@new.example"
    assert after["emails"] == ["ann@old.example", "ann@new.example"]
    assert after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]
    for email in ("ann@old.example", "ANN@new.example"):
        assert customer(client, account, email=email)["uuid"] == after["uuid"]
    # Another event with a third email adds it, but the profile keeps the identify's.
    send(client, account, {"event": "purchase", "customer_id": "c-1", "email": "a@third.example"})
    last = customer(client, account, customer_id="c-1")
    assert last["email"] == "ann@new.example"
    assert last["emails"] == ["ann@old.example", "ann@new.example", "a@third.example"]
    assert customer(client, account, email="a@third.example")["uuid"] == after["uuid"]


def test_traits_named_like_the_document_fields_are_kept_under_attributes(client, account):
    """The issue's fourth report: identify traits named uuid or created_at (analytics.js maps
    Segment's `created` to created_at) were accepted and then hidden."""
    traits = {
        "uuid": "segment-anon-1",
        "created_at": "2019-05-01T10:00:00Z",
        "updated_at": 1556704800,
        "emails": "all of them",
        "cookies": ["chocolate"],
        "attributes": {"nested": True},
        "first_name": "Ann",
    }
    send(client, account, {"event": "identify", "customer_id": "c-1", **traits})
    document = customer(client, account, customer_id="c-1")
    assert document["attributes"] == traits
    assert document["first_name"] == "Ann"
    # The document's own fields keep their meaning.
    assert UUID_RE.fullmatch(document["uuid"]) and ISO_MS_RE.fullmatch(document["created_at"])
    assert (document["emails"], document["cookies"]) == ([], [])
    by_uuid = client.get(f"{CUSTOMERS_URL}/{document['uuid']}", headers=basic(account.user_key))
    assert by_uuid.json()["customer"]["attributes"] == traits


def test_subscription_groups_update_the_profile(client, account):
    send(
        client,
        account,
        {
            "event": "subscription_update",
            "customer_id": "c-1",
            "subscription_groups": [
                {"id": "news", "subscribed": True},
                {"id": "promo", "subscribed": False},
            ],
        },
    )
    assert customer(client, account, customer_id="c-1")["subscription_groups"] == {
        "news": True,
        "promo": False,
    }
    send(
        client,
        account,
        {
            "event": "view",
            "customer_id": "c-1",
            "subscription_groups": [{"id": "promo", "subscribed": True}],
        },
    )
    document = customer(client, account, customer_id="c-1")
    assert document["subscription_groups"] == {"news": True, "promo": True}


def test_every_stored_event_has_the_user_uuid_of_a_customer(client, account):
    for body in (
        {"event": "view", "cookie": "ck-1"},
        {"event": "view", "device_id": "dev-1"},
        {"event": "view", "email_hash": md5_email("x@example.com")},
        {"event": "identify", "email": "x@example.com", "device_id": "dev-1"},
        {"event": "view", "retailer_customer_id": "r-1", "cookie": "ck-1"},
    ):
        send(client, account, body)
    rows = account.events()
    assert len(rows) == 5
    live = {r["uuid"] for r in customer_rows(account) if r["merged_into"] is None}
    assert all(r["user_uuid"] in live for r in rows)


# -- attribute types ------------------------------------------------------------------------


def test_attribute_of_another_type_than_first_seen_is_es_index_error(client, account):
    send(client, account, {"event": "view", "customer_id": "c-1", "plan": "gold"})
    raw = json.dumps({"event": "view", "customer_id": "c-1", "plan": 5}).encode()
    response = send_raw(client, account, raw)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["plan"]
    assert len(errors["plan"]) == 1 and isinstance(errors["plan"][0], str)
    assert len(account.events()) == 1
    (entry,) = account.error_log()
    assert entry["error_type"] == "es_index_error"
    assert json.loads(entry["errors"]) == errors
    assert json.loads(bytes(entry["raw"]))["plan"] == 5
    assert account.error_daily() == {(utc_day(entry["received_ms"]), "es_index_error"): 1}
    # The first type stays fixed: the same type is still accepted.
    send(client, account, {"event": "signup", "customer_id": "c-2", "plan": "silver"})
    assert len(account.events()) == 2
