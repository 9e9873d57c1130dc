"""The error log over HTTP, on SQLite and PostgreSQL: GET /api/v1/errors (filters, pages, one
row, CSV and NDJSON downloads), POST /api/v1/errors/replay after the rule that refused the
events is relaxed, and tenant isolation. Events are refused through the real API and the rules
changed with the real CLI."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

from conftest import basic

from .conftest import (
    ERRORS_URL,
    REPLAY_URL,
    Deployment,
    Tenant,
    errors_page,
    rejected,
    replay,
)

CHALLENGE = 'Basic realm="Trackway"'
CSV_COLUMNS = [
    "id",
    "received_at",
    "error_type",
    "errors",
    "raw",
    "status",
    "replayed_at",
    "replayed_event_uuid",
]


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def refuse_a_mix(deployment: Deployment, tenant: Tenant) -> list[tuple[bytes, str, dict]]:
    """Six refused events of three types, oldest first: (raw body, type, field errors)."""
    client = deployment.client
    sent = []
    for body, error_type in (
        ({"event": "view", "email": "not-an-email", "n": 1}, "invalid_email"),
        ({"event": "view", "n": 2}, "missing_identifier"),
        ({"event": "view", "email": "also@bad", "n": 3}, "invalid_email"),
        (b'{"event": "view", "cookie": ', "parsing_error"),
        ({"event": "view", "email": "x@", "n": 5}, "invalid_email"),
        ({"event": "purchase", "n": 6}, "missing_identifier"),
    ):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.append((raw, error_type, rejected(client, tenant, raw)))
    return sent


def test_the_log_lists_newest_first_with_filters_and_pages(deployment: Deployment) -> None:
    client, tenant = deployment.client, deployment.tenant()
    sent = refuse_a_mix(deployment, tenant)

    page = errors_page(client, tenant)
    assert (page["total"], page["total_capped"], page["next"]) == (6, False, None)
    listed = page["errors"]
    assert [e["raw"].encode() for e in listed] == [raw for raw, _, _ in reversed(sent)]
    assert [e["error_type"] for e in listed] == [t for _, t, _ in reversed(sent)]
    assert [e["errors"] for e in listed] == [errors for _, _, errors in reversed(sent)]
    ids = [e["id"] for e in listed]
    assert ids == sorted(ids, reverse=True)
    for entry in listed:
        assert entry["status"] == "pending"
        assert entry["replayed_at"] is None and entry["replayed_event_uuid"] is None
        assert entry["received_at"].startswith(today())
        assert entry["raw_truncated"] is False

    by_type = errors_page(client, tenant, type="invalid_email")
    assert [e["id"] for e in by_type["errors"]] == [ids[1], ids[3], ids[5]]
    assert by_type["total"] == 3
    assert errors_page(client, tenant, day=today())["total"] == 6
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert errors_page(client, tenant, day=yesterday) == {
        "errors": [],
        "total": 0,
        "total_capped": False,
        "next": None,
    }
    assert errors_page(client, tenant, type="missing_identifier", day=today())["total"] == 2
    assert errors_page(client, tenant, status="pending")["total"] == 6
    assert errors_page(client, tenant, status="replayed")["total"] == 0

    first = errors_page(client, tenant, limit=4)
    assert [e["id"] for e in first["errors"]] == ids[:4]
    assert first["next"]
    second = errors_page(client, tenant, limit=4, before=first["next"])
    assert [e["id"] for e in second["errors"]] == ids[4:]
    assert second["next"] is None
    assert second["total"] == 6

    one = client.get(f"{ERRORS_URL}/{ids[2]}", headers=basic(tenant.user_key))
    assert one.status_code == 200
    assert one.json()["raw"].encode() == sent[3][0]
    assert "raw_truncated" not in one.json()
    missing = client.get(f"{ERRORS_URL}/999999999", headers=basic(tenant.user_key))
    assert (missing.status_code, missing.json()) == (404, {"message": "Error not found"})

    bad = client.get(
        ERRORS_URL,
        params={"type": "nope", "day": "2024-13-45", "status": "x", "limit": "0"},
        headers=basic(tenant.user_key),
    )
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"type", "day", "status"}
    assert (
        client.get(ERRORS_URL, params={"limit": 0}, headers=basic(tenant.user_key)).status_code
        == 400
    )
    bad_cursor = client.get(ERRORS_URL, params={"before": "x"}, headers=basic(tenant.user_key))
    assert bad_cursor.status_code == 400


def test_downloads_hold_the_filtered_log_as_csv_and_ndjson(deployment: Deployment) -> None:
    client, tenant = deployment.client, deployment.tenant()
    sent = refuse_a_mix(deployment, tenant)
    formula = b'=HYPERLINK("http://evil.example")'
    rejected(client, tenant, formula)

    response = client.get(ERRORS_URL, params={"format": "csv"}, headers=basic(tenant.user_key))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"{tenant.name}" in disposition
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == CSV_COLUMNS
    records = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert len(records) == 7
    # A cell that a spreadsheet would run as a formula is kept as text.
    assert records[0]["raw"] == "'" + formula.decode()
    assert records[0]["error_type"] == "parsing_error"
    for record, (raw, error_type, errors) in zip(records[1:], reversed(sent), strict=True):
        assert record["raw"].encode() == raw
        assert record["error_type"] == error_type
        assert json.loads(record["errors"]) == errors
        assert (record["status"], record["replayed_at"], record["replayed_event_uuid"]) == (
            "pending",
            "",
            "",
        )
        assert record["received_at"].startswith(today())

    ndjson = client.get(
        ERRORS_URL,
        params={"format": "ndjson", "type": "invalid_email", "day": today()},
        headers=basic(tenant.user_key),
    )
    assert ndjson.status_code == 200
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    assert "invalid_email" in ndjson.headers["content-disposition"]
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    expected = [(raw, errors) for raw, t, errors in reversed(sent) if t == "invalid_email"]
    assert [(e["raw"].encode(), e["errors"]) for e in lines] == expected
    assert {e["error_type"] for e in lines} == {"invalid_email"}
    assert [e["id"] for e in lines] == [
        e["id"] for e in errors_page(client, tenant, type="invalid_email")["errors"]
    ]


def history(deployment: Deployment, tenant: Tenant, name: str) -> list[dict]:
    response = deployment.client.get(
        "/api/v1/event/history", params={"event_name": name}, headers=basic(tenant.user_key)
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    events: list[dict] = response.json()[name]
    return events


def test_replay_stores_what_passes_once_verification_is_off(deployment: Deployment) -> None:
    client, tenant = deployment.client, deployment.tenant()
    tenant.verification(enable=True)  # before the server ever sees the key: nothing cached
    names = [unique("signup"), unique("upgrade"), unique("cancel")]
    given_uuid = str(uuid.uuid4())
    bodies = [
        {"event": names[0], "customer_id": "cust-1", "plan": "pro"},
        {"event": names[1], "customer_id": "cust-2", "event_uuid": given_uuid, "seats": 3},
        {"event": names[2], "email": "carol@example.com"},
        {"event": names[0], "email": "not-an-email"},
    ]
    for body in bodies:
        errors = rejected(client, tenant, body)
        assert "event_signature" in errors and "verification_key" in errors
    page = errors_page(client, tenant)
    assert [e["error_type"] for e in page["errors"]] == ["event_verification_error"] * 4
    assert history(deployment, tenant, names[0]) == []

    tenant.verification(enable=False)
    outcome = replay(client, tenant, type="event_verification_error")
    assert (outcome["replayed"], outcome["failed"], outcome["skipped"], outcome["missing"]) == (
        3,
        1,
        0,
        0,
    )
    after = {e["id"]: e for e in errors_page(client, tenant)["errors"]}
    ids = [e["id"] for e in reversed(page["errors"])]  # in the order sent
    for error_id in ids[:3]:
        assert after[error_id]["status"] == "replayed"
        assert after[error_id]["replayed_at"].startswith(today())
        assert after[error_id]["error_type"] == "event_verification_error"
    assert after[ids[1]]["replayed_event_uuid"] == given_uuid
    still = after[ids[3]]
    assert still["status"] == "pending"
    assert still["error_type"] == "invalid_email"
    assert still["errors"] == {"email": ["is not valid"]}
    assert still["retried_at"] is not None and still["replayed_at"] is None

    # Stored like any event: history, the customer's timeline, the daily counts.
    stored = history(deployment, tenant, names[1])
    assert len(stored) == 1
    assert stored[0]["event_uuid"] == given_uuid and stored[0]["seats"] == 3
    first = history(deployment, tenant, names[0])
    assert len(first) == 1 and first[0]["plan"] == "pro"
    assert first[0]["event_uuid"] == after[ids[0]]["replayed_event_uuid"]
    found = client.get(
        "/api/v1/customers", params={"customer_id": "cust-1"}, headers=basic(tenant.user_key)
    )
    assert found.status_code == 200, found.text
    timeline = client.get(
        "/api/v1/customer_search/show_events",
        params={"uuid": found.json()["customer"]["uuid"]},
        headers=basic(tenant.user_key),
    )
    assert [e["event"] for e in timeline.json()] == [names[0]]
    summary = client.get("/api/v1/event/summary.json", headers=basic(tenant.user_key)).json()
    chart = summary["events_chart_stats"][0]
    assert sum(chart["events"][names[2]]) == 1
    # The refusals happened: their count stays.
    assert sum(chart["error"]["event_verification_error"]) == 4

    # Again: nothing is stored twice; the one that still fails fails again.
    again = replay(client, tenant, ids=ids)
    assert (again["replayed"], again["failed"], again["skipped"]) == (0, 1, 3)
    assert {r["id"]: r["status"] for r in again["results"]} == {
        ids[0]: "skipped",
        ids[1]: "skipped",
        ids[2]: "skipped",
        ids[3]: "failed",
    }
    assert len(history(deployment, tenant, names[0])) == 1
    assert len(history(deployment, tenant, names[1])) == 1
    assert errors_page(client, tenant, status="replayed")["total"] == 3
    assert errors_page(client, tenant, status="pending")["total"] == 1
    assert errors_page(client, tenant, type="invalid_email")["total"] == 1


def test_replay_by_ids_and_one_tenant_never_touches_another(deployment: Deployment) -> None:
    client = deployment.client
    a, b = deployment.tenant(), deployment.tenant()
    a.verification(enable=True)
    name = unique("checkout_started")
    for n in range(3):
        rejected(client, a, {"event": name, "customer_id": f"a-{n}", "n": n})
    ids = [e["id"] for e in errors_page(client, a)["errors"]]
    a.verification(enable=False)

    # B's user key sees none of A's errors and cannot replay them.
    assert errors_page(client, b)["total"] == 0
    assert client.get(f"{ERRORS_URL}/{ids[0]}", headers=basic(b.user_key)).status_code == 404
    refused = replay(client, b, ids=ids)
    assert (refused["replayed"], refused["missing"]) == (0, 3)
    assert replay(client, b, type="event_verification_error")["replayed"] == 0
    assert replay(client, b, all=True)["replayed"] == 0
    export = client.get(ERRORS_URL, params={"format": "ndjson"}, headers=basic(b.user_key))
    assert export.text == ""
    assert errors_page(client, a, status="pending")["total"] == 3

    # The event key sends events; it does not read or replay the log.
    for response in (
        client.get(ERRORS_URL, headers=basic(a.event_key)),
        client.get(ERRORS_URL, params={"format": "csv"}, headers=basic(a.event_key)),
        client.post(REPLAY_URL, json={"ids": ids}, headers=basic(a.event_key)),
        client.get("/clickstream/stream", headers=basic(a.event_key)),
    ):
        assert (response.status_code, response.json()) == (403, {"message": "Permission denied"})
    for headers in ({}, basic("not-a-key")):
        for response in (
            client.get(ERRORS_URL, headers=headers),
            client.post(REPLAY_URL, json={"ids": ids}, headers=headers),
            client.get("/clickstream/stream", headers=headers),
            client.get("/api/v1/event/summary.json", headers=headers),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == CHALLENGE
    assert errors_page(client, a, status="pending")["total"] == 3

    # A replays one by id: only that one moves.
    outcome = replay(client, a, ids=[ids[1], 999_999_999_999])
    assert (outcome["replayed"], outcome["missing"]) == (1, 1)
    statuses = {e["id"]: e["status"] for e in errors_page(client, a)["errors"]}
    assert statuses == {ids[0]: "pending", ids[1]: "replayed", ids[2]: "pending"}
    assert [e["n"] for e in history(deployment, a, name)] == [1]

    # A page of another site cannot make a signed-in browser replay.
    for cross_site in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    ):
        answer = client.post(
            REPLAY_URL, content=b'{"all": true}', headers={**basic(a.user_key), **cross_site}
        )
        assert answer.status_code == 403
    assert errors_page(client, a, status="pending")["total"] == 2
    same_site = {"Origin": deployment.server.url, "Sec-Fetch-Site": "same-origin"}
    answer = client.post(
        REPLAY_URL, json={"ids": [ids[0]]}, headers={**basic(a.user_key), **same_site}
    )
    assert answer.status_code == 200 and answer.json()["replayed"] == 1

    bad = client.post(REPLAY_URL, json={}, headers=basic(a.user_key))
    assert bad.status_code == 400 and "ids" in bad.json()["errors"]
    bad = client.post(REPLAY_URL, json={"ids": ["x"]}, headers=basic(a.user_key))
    assert bad.status_code == 400


def test_the_page_asks_for_the_user_key(deployment: Deployment) -> None:
    client, tenant = deployment.client, deployment.tenant()
    for headers in ({}, basic("not-a-key")):
        response = client.get("/clickstream", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == CHALLENGE
        assert "user API key" in response.text
    response = client.get("/clickstream", headers=basic(tenant.event_key))
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    response = client.get("/clickstream", headers=basic(tenant.user_key))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert tenant.name in response.text
    # Everything the page loads comes from the server itself.
    assert "http://" not in response.text and "https://" not in response.text
    for asset in ("clickstream.js", "clickstream.css"):
        served = client.get(f"/clickstream/{asset}")
        assert served.status_code == 200
        assert "https://" not in served.text.replace("http://www.w3.org/2000/svg", "")
    assert client.get("/clickstream/cli.py").status_code == 404


FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0"


def test_pixel_rows_replay_as_they_came_with_their_request(deployment: Deployment) -> None:
    """A /unity.gif row is read back as the pixel's query (not as JSON), with the user agent,
    IP and referrer its request had; a row that fails again keeps its own error type."""
    client, tenant = deployment.client, deployment.tenant()
    tenant.verification(enable=True)  # before the server ever sees the key: nothing cached
    name = unique("pixelview")
    headers = {"User-Agent": FIREFOX, "Referer": "https://shop.example/from"}
    key = tenant.event_key
    for params in (
        {"x": key, "e": name, "k": "pix-1", "u": "https://shop.example/p/1", "plan": "pro"},
        {"x": key, "e": name, "z": "2"},  # no identifier
        {"x": key, "e": name, "k": "pix-3", "meta_json": "{"},  # not JSON: refused at once
    ):
        assert client.get("/unity.gif", params=params, headers=headers).status_code == 200
    page = errors_page(client, tenant)["errors"]
    assert [e["error_type"] for e in page] == [
        "parsing_error",
        "event_verification_error",
        "event_verification_error",
    ]
    for entry in page:
        assert entry["source"] == "pixel"
        assert entry["context"] == {
            "user_agent": FIREFOX,
            "ip": "127.0.0.1",
            "referrer": "https://shop.example/from",
        }
        assert key not in entry["raw"] and "x=" not in entry["raw"]
    bad_json, no_identifier, good = (e["id"] for e in page)

    tenant.verification(enable=False)
    outcome = replay(client, tenant, all=True)
    assert (outcome["replayed"], outcome["failed"]) == (1, 2)
    after = {e["id"]: e for e in errors_page(client, tenant)["errors"]}
    assert after[good]["status"] == "replayed"
    assert (after[no_identifier]["status"], after[no_identifier]["error_type"]) == (
        "pending",
        "missing_identifier",
    )
    assert after[bad_json]["error_type"] == "parsing_error"
    assert after[bad_json]["errors"] == {"meta_json": ["is not valid JSON"]}

    stored = history(deployment, tenant, name)
    assert len(stored) == 1
    event = stored[0]
    assert event["event_uuid"] == after[good]["replayed_event_uuid"]
    assert (event["cookie"], event["url"], event["plan"]) == (
        "pix-1",
        "https://shop.example/p/1",
        "pro",
    )
    assert (event["user_agent"], event["ip"], event["referrer"]) == (
        FIREFOX,
        "127.0.0.1",
        "https://shop.example/from",
    )
    # A second replay: the replayed row is no longer pending; nothing is stored twice.
    again = replay(client, tenant, all=True)
    assert (again["replayed"], again["failed"], again["skipped"]) == (0, 2, 0)
    assert len(history(deployment, tenant, name)) == 1


def test_json_rows_say_so(deployment: Deployment) -> None:
    client, tenant = deployment.client, deployment.tenant()
    rejected(client, tenant, {"event": "view", "n": 1})
    (entry,) = errors_page(client, tenant)["errors"]
    assert (entry["source"], entry["context"]) == ("json", None)
