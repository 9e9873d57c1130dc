"""POST /api/v1/bulkevents: each event under the rules of POST /api/v1/event; the valid ones are
stored, the invalid ones answered by index and logged and counted like single ones."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from conftest import Server, basic, create_account
from support import (
    BULK_URL,
    NO_IDENTIFIER,
    NOT_AUTHORIZED,
    NOT_VALID,
    bulk,
    canonical,
    utc_day,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def new_uuid() -> str:
    return str(uuid.uuid4())


def stored_uuids(account) -> list[str]:
    return sorted(r["event_uuid"] for r in account.events())


def test_all_valid_is_200_with_the_count(client, account):
    events = [
        {"event": "view", "customer_id": "c-1", "event_uuid": new_uuid()},
        {"event": "add_to_cart", "email": "a@example.com", "event_uuid": new_uuid()},
        {"event": "app_open", "device_id": "dev-1", "event_uuid": new_uuid()},
    ]
    response = bulk(client, account.event_key, events)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "count": 3}
    assert stored_uuids(account) == sorted(e["event_uuid"] for e in events)
    for sent in events:
        _, body = account.stored(sent["event_uuid"])
        assert {k: body[k] for k in sent} == sent
    assert account.error_log() == []


def test_empty_events_array_is_200_with_count_0(client, account):
    response = bulk(client, account.event_key, [])
    assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 0})
    assert account.events() == []


def test_mixed_batch_stores_the_valid_ones_and_answers_each_invalid_one(client, account):
    uuids = [new_uuid() for _ in range(6)]
    events: list[Any] = [
        {"event": "view", "customer_id": "c-0", "event_uuid": uuids[0]},
        {"event": "view", "event_uuid": uuids[1]},
        {"event": "view", "customer_id": "c-2", "event_uuid": uuids[2]},
        {"event": "view", "email": "not-an-email"},
        "not an event",
        {"event": "view", "cookie": "ck-5", "event_uuid": uuids[5]},
    ]
    response = bulk(client, account.event_key, events)
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"status", "count", "errors"}
    assert (answer["status"], answer["count"]) == ("partial", 3)
    first, second, third = answer["errors"]
    assert first == {"index": 1, "event_uuid": uuids[1], "errors": {"base": NO_IDENTIFIER}}
    assert second == {"index": 3, "event_uuid": None, "errors": {"email": NOT_VALID}}
    assert (third["index"], third["event_uuid"]) == (4, None)
    assert isinstance(third["errors"], dict) and third["errors"]
    assert stored_uuids(account) == sorted([uuids[0], uuids[2], uuids[5]])
    log = account.error_log()
    assert [e["error_type"] for e in log] == [
        "missing_identifier",
        "invalid_email",
        "parsing_error",
    ]
    assert json.loads(bytes(log[0]["raw"])) == events[1]
    assert json.loads(bytes(log[1]["raw"])) == events[3]
    assert json.loads(bytes(log[2]["raw"])) == events[4]
    assert json.loads(log[0]["errors"]) == {"base": NO_IDENTIFIER}
    day = utc_day(log[0]["received_ms"])
    assert account.error_daily() == {
        (day, "missing_identifier"): 1,
        (day, "invalid_email"): 1,
        (day, "parsing_error"): 1,
    }


def test_all_invalid_is_partial_with_count_0(client, account):
    response = bulk(
        client, account.event_key, [{"customer_id": "c"}, {"event": "a.b", "cookie": "k"}]
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "partial",
        "count": 0,
        "errors": [
            {"index": 0, "event_uuid": None, "errors": {"event": ["can't be blank"]}},
            {"index": 1, "event_uuid": None, "errors": {"event": NOT_VALID}},
        ],
    }
    assert account.events() == []
    assert sorted(account.error_daily().values()) == [1, 1]


def test_attribute_type_conflict_in_a_batch_is_es_index_error(client, account):
    uuids = [new_uuid(), new_uuid(), new_uuid()]
    response = bulk(
        client,
        account.event_key,
        [
            {"event": "view", "customer_id": "c", "plan": "gold", "event_uuid": uuids[0]},
            {"event": "view", "customer_id": "c", "plan": 5, "event_uuid": uuids[1]},
            {"event": "view", "customer_id": "c", "plan": "free", "event_uuid": uuids[2]},
        ],
    )
    assert response.status_code == 400
    answer = response.json()
    assert (answer["status"], answer["count"]) == ("partial", 2)
    (error,) = answer["errors"]
    assert (error["index"], error["event_uuid"], list(error["errors"])) == (1, uuids[1], ["plan"])
    assert stored_uuids(account) == sorted([uuids[0], uuids[2]])
    (entry,) = account.error_log()
    assert entry["error_type"] == "es_index_error"
    assert account.error_daily() == {(utc_day(entry["received_ms"]), "es_index_error"): 1}


def test_more_than_100_events_is_413_and_stores_nothing(client, account):
    events = [{"event": "view", "customer_id": f"c-{i}"} for i in range(101)]
    response = bulk(client, account.event_key, events)
    assert response.status_code == 413
    assert list(response.json()) == ["message"]
    assert isinstance(response.json()["message"], str) and response.json()["message"]
    assert account.events() == []
    response = bulk(client, account.event_key, events[:100])
    assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 100})
    assert len(account.events()) == 100


def test_body_over_the_size_limit_is_413_and_stores_nothing(client, account):
    events = [{"event": "view", "customer_id": "c", "pad": "p" * 11_000} for _ in range(100)]
    response = bulk(client, account.event_key, events)
    assert response.status_code == 413
    assert list(response.json()) == ["message"]
    assert account.events() == []


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'"events"', b"{}", b'{"events": {}}', b'{"events": null}', b"{not json", b""],
    ids=["array", "string", "no_events", "events_object", "events_null", "not_json", "empty"],
)
def test_not_an_object_with_an_events_array_is_400_parsing_error(client, account, raw):
    response = bulk(client, account.event_key, raw)
    assert response.status_code == 400
    assert list(response.json()) == ["errors"]
    assert account.events() == []
    (entry,) = account.error_log()
    assert entry["error_type"] == "parsing_error"
    assert bytes(entry["raw"]) == raw
    assert account.error_daily() == {(utc_day(entry["received_ms"]), "parsing_error"): 1}


AUTH_FORMS = {
    "basic_key_colon": lambda key: "Basic " + b64(f"{key}:"),
    "basic_key_without_colon": lambda key: "Basic " + b64(key),
    "bare_key_colon": lambda key: b64(f"{key}:"),
}


@pytest.mark.parametrize("kind", ["event", "user"])
@pytest.mark.parametrize("form", list(AUTH_FORMS))
def test_every_authorization_form_works_on_bulk(client, account, form, kind):
    key = account.event_key if kind == "event" else account.user_key
    event_uuid = new_uuid()
    response = bulk(
        client,
        key,
        [{"event": "view", "customer_id": "c", "event_uuid": event_uuid}],
        headers={"Authorization": AUTH_FORMS[form](key)},
    )
    assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 1})
    assert stored_uuids(account) == [event_uuid]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic " + b64(f"{uuid.uuid4().hex}:")}],
    ids=["no_key", "unknown_key"],
)
def test_bulk_without_a_valid_key_is_401(client, account, headers):
    response = bulk(
        client, account.event_key, [{"event": "view", "customer_id": "c"}], headers=headers
    )
    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)
    assert account.events() == []


def test_get_is_405(client, account):
    response = client.get(BULK_URL, headers=basic(account.event_key))
    assert response.status_code == 405


def test_duplicate_event_uuid_within_a_batch_is_stored_once(client, account):
    shared, other = new_uuid(), new_uuid()
    response = bulk(
        client,
        account.event_key,
        [
            {"event": "purchase", "customer_id": "c", "event_uuid": shared, "n": 1},
            {"event": "purchase", "customer_id": "c", "event_uuid": shared.upper(), "n": 2},
            {"event": "purchase", "customer_id": "c", "event_uuid": other, "n": 3},
        ],
    )
    assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 3})
    assert stored_uuids(account) == sorted([shared, other])
    _, body = account.stored(shared)
    assert body["n"] == 1
    assert list(account.event_daily().values()) == [2]


def test_duplicate_event_uuid_across_batches_is_stored_once(client, account):
    a, b, c = new_uuid(), new_uuid(), new_uuid()

    def event(event_uuid: str) -> dict[str, Any]:
        return {"event": "purchase", "customer_id": "c", "event_uuid": event_uuid}

    for batch in ([a, b], [a, b], [b, c]):
        response = bulk(client, account.event_key, [event(u) for u in batch])
        assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 2})
    assert stored_uuids(account) == sorted([a, b, c])
    assert list(account.event_daily().values()) == [3]


# -- a realistic mobile batch --------------------------------------------------------------------

IDFV = "8ABE3FAA-D48D-4E4A-90CA-BEAE01F1C987"
APNS_TOKEN = "f" * 8 + "0123456789abcdef" * 3 + "0" * 8


def mobile_event(i: int) -> dict[str, Any]:
    common = {
        "event_uuid": str(uuid.UUID(int=i + 1, version=4)),
        "device_id": IDFV,
        "device_idfv": IDFV,
        "device_token": APNS_TOKEN,
        "device_type": "ios",
        "device_manufacturer": "Apple",
        "os_name": "iOS 17.4.1",
        "network_carrier": "T-Mobile",
        "app_name": "com.example.shop",
        "app_version": "3.2.1 (45)",
        "bsft_sdk_version": "2.5.1",
        "language_code": "en",
        "country_code": "US",
        "latitude": 37.42199834,
        "longitude": -122.08400000000001,
        "timestamp": f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}.{i:03d}Z",
    }
    kind = i % 4
    if kind == 0:
        return {**common, "event": "app_open", "session_start": True}
    if kind == 1:
        return {
            **common,
            "event": "push_delivered",
            "message_uuid": str(uuid.UUID(int=1000 + i, version=4)),
            "push_payload": {
                "aps": {
                    "alert": {"title": "Sale \u2013 50% off", "body": "Tap to see <b>deals</b>"},
                    "badge": i,
                    "sound": "default",
                    "mutable-content": 1,
                },
                "bsft_experiment_uuid": "3f1b2c4d-0000-4000-8000-000000000001",
                "deep_link": f"shop://product/{i}?ref=push&utm_source=bsft",
                "image_url": f"https://cdn.example.com/img/{i}.png",
                "actions": [{"id": "buy", "title": "Buy"}, {"id": "later", "title": "Later"}],
                "silent": False,
                "ttl": None,
            },
        }
    if kind == 2:
        return {
            **common,
            "event": "add_to_cart",
            "product_ids": [f"SKU-{i}", "SKU-0"],
            "price": 49.9900016784668,
            "quantity": i,
            "discount": 0.1 + 0.2,
            "url": f"https://shop.example.com/p/{i}",
        }
    return {
        **common,
        "event": "purchase",
        "order": {"id": f"o-{i}", "total": 1e-7 * i, "lines": [{"sku": "SKU-0", "price": 19.99}]},
        "revenue": 123456789.98765433,
    }


def test_realistic_mobile_batch_is_stored_as_sent(client, account):
    events = [mobile_event(i) for i in range(100)]
    text = json.dumps({"events": events}, ensure_ascii=False)
    raw = text.replace("/", "\\/").encode()  # as iOS's JSONSerialization writes it
    assert b"https:\\/\\/cdn.example.com" in raw and 49.9900016784668 in events[2].values()
    response = bulk(
        client, account.event_key, raw, headers={"Authorization": b64(f"{account.event_key}:")}
    )
    assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 100})
    assert account.error_log() == []
    rows = account.events()
    assert len(rows) == 100
    by_uuid = {r["event_uuid"]: json.loads(r["body"]) for r in rows}
    for sent in events:
        stored = by_uuid[sent["event_uuid"]]
        assert canonical(stored) == canonical(sent), sent["event_uuid"]
    assert by_uuid[events[2]["event_uuid"]]["price"] == 49.9900016784668
    assert by_uuid[events[3]["event_uuid"]]["revenue"] == 123456789.98765433
    assert by_uuid[events[1]["event_uuid"]]["push_payload"]["deep_link"] == (
        "shop://product/1?ref=push&utm_source=bsft"
    )
    assert len({r["user_uuid"] for r in rows}) == 1
    assert sum(account.event_daily().values()) == 100


def test_max_bulk_events_setting_is_the_limit(tmp_path):
    server = Server(tmp_path / "trackway.db", tmp_path / "server.log", "--max-bulk-events", "5")
    server.start()
    try:
        account = create_account(server.db_path)
        events = [{"event": "view", "customer_id": f"c-{i}"} for i in range(6)]
        with httpx.Client(base_url=server.url, timeout=30.0) as c:
            response = bulk(c, account.event_key, events)
            assert response.status_code == 413
            assert list(response.json()) == ["message"]
            assert account.events() == []
            response = bulk(c, account.event_key, events[:5])
            assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 5})
        assert len(account.events()) == 5
    finally:
        server.stop()
