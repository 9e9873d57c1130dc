"""Fields Trackway itself reads or fills are typed by rule on every path (event, bulk, pixel,
replay; import in tests/cli/test_import_export.py), never by first use; a timestamp more than
--max-future-hours after its receipt is refused; a JSON body that is not an object says so."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Account, Server, basic, create_account, query, run_cli
from support import BULK_URL, EVENT_URL, HISTORY_URL, iso_ms, now_ms, utc_day

PIXEL_URL = "/unity.gif"
REPLAY_URL = "/api/v1/errors/replay"
HOUR_MS = 3_600_000
FUTURE = ["must not be more than 24 hours in the future"]
NOT_A_STRING = ["must be a string"]
NOT_A_TIMESTAMP = ["is not a valid ISO 8601 timestamp or Unix time"]
NOT_AN_OBJECT = ["must be a JSON object"]
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)

# (field, a value of the wrong type, its message)
WRONG_TYPES: list[tuple[str, Any, list[str]]] = [
    ("user_agent", 123, NOT_A_STRING),
    ("referrer", {"href": "x"}, NOT_A_STRING),
    ("url", ["https://shop.example/"], NOT_A_STRING),
    ("site", True, NOT_A_STRING),
    ("session_uuid", 7, NOT_A_STRING),
    ("ip", 3232235777, NOT_A_STRING),
    ("device_type", 1, NOT_A_STRING),
    ("user_uuid", 1, NOT_A_STRING),
    ("timestamp_epoch", "1700000000", ["must be a number"]),
    ("sent_at", "garbage", NOT_A_TIMESTAMP),
]


def fixed_types(account: Account) -> dict[str, str]:
    rows = query(
        account.db_path, "SELECT name, type FROM attribute_types WHERE account_id = ?", [account.id]
    )
    return {r["name"]: r["type"] for r in rows}


def pixel(client: httpx.Client, account: Account, **params: Any) -> httpx.Response:
    response = client.get(
        PIXEL_URL, params={"x": account.event_key, **params}, headers={"User-Agent": CHROME_UA}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    return response


def bulk(client: httpx.Client, account: Account, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(BULK_URL, content=content, headers=basic(account.event_key))


# -- built-in fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "messages"), WRONG_TYPES, ids=[w[0] for w in WRONG_TYPES]
)
def test_a_built_in_field_of_the_wrong_type_is_400_naming_it(
    post: Any, account: Account, field: str, value: Any, messages: list[str]
) -> None:
    response = post({"event": "view", "cookie": "c", "note": "kept out", field: value})
    assert (response.status_code, response.json()) == (400, {"errors": {field: messages}})
    (entry,) = account.error_log()
    assert entry["error_type"] == "invalid_event_attributes"
    assert json.loads(entry["errors"]) == {field: messages}
    assert account.error_daily() == {(utc_day(entry["received_ms"]), "invalid_event_attributes"): 1}
    assert account.events() == [] and fixed_types(account) == {}


def test_a_number_as_user_agent_no_longer_locks_the_browser_out(
    client: httpx.Client, post: Any, account: Account
) -> None:
    """The issue's first report: `user_agent: 123` was stored and fixed the name as a number,
    and every later browser event was refused as es_index_error behind its GIF."""
    assert post({"event": "x", "cookie": "c", "user_agent": 123}).status_code == 400
    pixel(client, account, e="view", k="c", product_id="p1")
    assert post({"event": "x", "cookie": "c", "user_agent": CHROME_UA}).status_code == 200
    bodies = [json.loads(row["body"]) for row in account.events()]
    assert [b["user_agent"] for b in bodies] == [CHROME_UA, CHROME_UA]
    assert "user_agent" not in fixed_types(account)
    assert [e["error_type"] for e in account.error_log()] == ["invalid_event_attributes"]


def test_a_bad_sent_at_without_timestamp_is_refused_and_fixes_no_type(
    post: Any, account: Account
) -> None:
    response = post({"event": "x", "cookie": "c", "sent_at": "garbage"})
    assert (response.status_code, response.json()) == (
        400,
        {"errors": {"sent_at": NOT_A_TIMESTAMP}},
    )
    sent = iso_ms(now_ms())
    assert post({"event": "x", "cookie": "c", "sent_at": sent}).status_code == 200
    assert post({"event": "x", "cookie": "c", "sent_at": now_ms() / 1000}).status_code == 200
    assert len(account.events()) == 2 and fixed_types(account) == {}


def test_custom_attributes_are_still_fixed_by_first_use(post: Any, account: Account) -> None:
    assert (
        post({"event": "x", "cookie": "c", "plan": "pro", "user_agent": CHROME_UA}).status_code
        == 200
    )
    assert fixed_types(account) == {"plan": "string"}
    response = post({"event": "x", "cookie": "c", "plan": 3})
    assert response.status_code == 400
    assert response.json() == {"errors": {"plan": ["must be of type string (got number)"]}}


def test_bulk_items_are_held_to_the_same_rules(client: httpx.Client, account: Account) -> None:
    good = str(uuid.uuid4())
    events = [
        {"event": "view", "cookie": "c", "event_uuid": good},
        {"event": "view", "cookie": "c", "user_agent": 5},
        {"event": "view", "cookie": "c", "timestamp": "2099-01-01T00:00:00Z"},
        {"event": "view", "cookie": "c", "sent_at": {}},
        7,
        [],
    ]
    response = bulk(client, account, {"events": events})
    assert response.status_code == 400
    answer = response.json()
    assert (answer["status"], answer["count"]) == ("partial", 1)
    assert [(e["index"], e["errors"]) for e in answer["errors"]] == [
        (1, {"user_agent": NOT_A_STRING}),
        (2, {"timestamp": FUTURE}),
        (3, {"sent_at": NOT_A_TIMESTAMP}),
        (4, {"body": NOT_AN_OBJECT}),
        (5, {"body": NOT_AN_OBJECT}),
    ]
    assert [row["event_uuid"] for row in account.events()] == [good]
    types = sorted(e["error_type"] for e in account.error_log())
    assert types == ["invalid_event_attributes"] * 3 + ["parsing_error"] * 2
    assert fixed_types(account) == {}


def test_the_pixel_is_held_to_the_same_rules(client: httpx.Client, account: Account) -> None:
    """The browser gets its GIF; the rejection is logged and counted, naming the field."""
    ahead = now_ms() // 1000 + 3 * 86400
    pixel(client, account, e="view", k="c", user_agent_json="5")
    pixel(client, account, e="view", k="c", t=str(ahead))
    pixel(client, account, e="view", k="c", sent_at="garbage")
    pixel(client, account, e="view", k="c", u="https://shop.example/", t=str(ahead - 2 * 86400))
    log = account.error_log()
    assert [(e["error_type"], json.loads(e["errors"])) for e in log] == [
        ("invalid_event_attributes", {"user_agent": NOT_A_STRING}),
        ("invalid_event_attributes", {"timestamp": FUTURE}),
        ("invalid_event_attributes", {"sent_at": NOT_A_TIMESTAMP}),
    ]
    (row,) = account.events()
    assert json.loads(row["body"])["url"] == "https://shop.example/"
    assert fixed_types(account) == {}


def test_replay_is_held_to_the_same_rules(
    client: httpx.Client, post: Any, account: Account
) -> None:
    """A payload replays through today's rules: a future timestamp is still one (received at
    its original time) and a built-in field of the wrong type is still named."""
    post({"event": "x", "cookie": "c", "timestamp": "2099-01-01T00:00:00Z"})
    post({"event": "x", "cookie": "c", "email": "not-an-email", "url": 5})
    ids = [e["id"] for e in account.error_log()]
    response = client.post(
        REPLAY_URL, content=json.dumps({"ids": ids}).encode(), headers=basic(account.user_key)
    )
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["replayed"], outcome["failed"]) == (0, 2)
    assert {r["id"]: r["errors"] for r in outcome["results"]} == {
        ids[0]: {"timestamp": FUTURE},
        ids[1]: {"email": ["is not valid"], "url": NOT_A_STRING},
    }
    assert account.events() == []


# -- timestamps in the future -------------------------------------------------------------------


def test_a_timestamp_up_to_24_hours_ahead_is_stored(post: Any, account: Account) -> None:
    event_uuid = str(uuid.uuid4())
    soon = iso_ms(now_ms() + 23 * HOUR_MS)
    response = post({"event": "x", "cookie": "c", "event_uuid": event_uuid, "timestamp": soon})
    assert response.status_code == 200
    assert account.stored(event_uuid)[1]["timestamp"] == soon


@pytest.mark.parametrize(
    "timestamp",
    ["2099-01-01T00:00:00Z", "in 25 hours", "unix in 2 days"],
)
def test_a_timestamp_more_than_24_hours_ahead_is_400(
    post: Any, account: Account, timestamp: str
) -> None:
    value: Any = {
        "in 25 hours": iso_ms(now_ms() + 25 * HOUR_MS),
        "unix in 2 days": now_ms() // 1000 + 2 * 86400,
    }.get(timestamp, timestamp)
    response = post({"event": "x", "cookie": "c", "timestamp": value})
    assert (response.status_code, response.json()) == (400, {"errors": {"timestamp": FUTURE}})
    (entry,) = account.error_log()
    assert entry["error_type"] == "invalid_event_attributes"
    assert account.events() == []


def test_the_bound_is_checked_after_clock_skew_correction(post: Any, account: Account) -> None:
    # A phone whose clock says 2099: its timestamp and sent_at agree, so the event is now.
    event_uuid = str(uuid.uuid4())
    response = post(
        {
            "event": "x",
            "cookie": "c",
            "event_uuid": event_uuid,
            "timestamp": "2099-01-01T00:00:00Z",
            "sent_at": "2099-01-01T00:00:05Z",
        }
    )
    assert response.status_code == 200
    stored = account.stored(event_uuid)[0]["timestamp_ms"]
    assert abs(stored - (now_ms() - 5000)) < 60_000


def bounded_server(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    return Server(tmp_path / "trackway.db", tmp_path / "server.log", *args, env=env).start()


def test_max_future_hours_0_turns_the_bound_off(tmp_path: Path) -> None:
    server = bounded_server(tmp_path, "--max-future-hours", "0")
    try:
        account = create_account(server.db_path)
        event_uuid = str(uuid.uuid4())
        body = {
            "event": "x",
            "cookie": "c",
            "event_uuid": event_uuid,
            "timestamp": "2099-01-01T00:00:00Z",
        }
        response = httpx.post(server.url + EVENT_URL, json=body, headers=basic(account.event_key))
        assert response.status_code == 200, response.text
        assert account.stored(event_uuid)[1]["timestamp"] == "2099-01-01T00:00:00Z"
    finally:
        server.stop()


def test_the_bound_is_a_variable_too(tmp_path: Path) -> None:
    server = bounded_server(tmp_path, env={"TRACKWAY_MAX_FUTURE_HOURS": "1"})
    try:
        account = create_account(server.db_path)
        url, headers = server.url + EVENT_URL, basic(account.event_key)
        later = iso_ms(now_ms() + 2 * HOUR_MS)
        response = httpx.post(
            url, json={"event": "x", "cookie": "c", "timestamp": later}, headers=headers
        )
        assert response.json() == {
            "errors": {"timestamp": ["must not be more than 1 hour in the future"]}
        }
        soon = iso_ms(now_ms() + 30 * 60_000)
        response = httpx.post(
            url, json={"event": "x", "cookie": "c", "timestamp": soon}, headers=headers
        )
        assert response.status_code == 200
    finally:
        server.stop()
    # The page's replay uses the server's bound: on the same database, a server without one
    # stores the event refused above.
    server = bounded_server(tmp_path, "--max-future-hours", "0")
    try:
        (entry,) = account.error_log()
        response = httpx.post(
            server.url + REPLAY_URL,
            content=json.dumps({"ids": [entry["id"]]}).encode(),
            headers=basic(account.user_key),
        )
        assert response.json()["replayed"] == 1, response.text
        assert len(account.events()) == 2
    finally:
        server.stop()


def test_a_bad_setting_is_refused_at_start(tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        "--max-future-hours",
        "-1",
        "--database",
        "sqlite:///" + str(tmp_path / "x.db"),
        check=False,
    )
    assert result.returncode == 2 and "--max-future-hours" in result.stderr


# -- bodies that are JSON but not an object ----------------------------------------------------


@pytest.mark.parametrize("raw", [b"[]", b'[{"event": "x", "cookie": "c"}]', b"5", b'"x"', b"null"])
def test_a_non_object_body_says_so(
    client: httpx.Client, post: Any, account: Account, raw: bytes
) -> None:
    response = post(raw)
    assert (response.status_code, response.json()) == (400, {"errors": {"body": NOT_AN_OBJECT}})
    response = bulk(client, account, raw)
    assert (response.status_code, response.json()) == (400, {"errors": {"body": NOT_AN_OBJECT}})
    assert [e["error_type"] for e in account.error_log()] == ["parsing_error"] * 2
    response = client.post(HISTORY_URL, content=raw, headers=basic(account.user_key))
    assert (response.status_code, response.json()) == (400, {"errors": {"body": NOT_AN_OBJECT}})


def test_invalid_json_still_says_so(post: Any) -> None:
    response = post(b"[1, 2")
    assert response.json() == {"errors": {"body": ["is not valid JSON"]}}
