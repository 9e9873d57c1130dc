"""The `trackway` command, run as a subprocess against real SQLite files."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import Account, Server, basic, create_account, query, run_cli, sqlite_url

KEY_RE = re.compile(r"[0-9a-fA-F]{32,}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EVENT_URL = "/api/v1/event"
# The server trusts a key lookup for up to 5 seconds; a rotated key must stop within that.
CREDENTIAL_TTL = 5.0


def database_bytes(db_path: Path) -> bytes:
    """The database file with its WAL and shared memory, as they are on disk."""
    return b"".join(
        p.read_bytes()
        for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"))
        if p.exists()
    )


def send(server: Server, key: str) -> int:
    response = httpx.post(
        server.url + EVENT_URL,
        json={"event": "view", "customer_id": "c-1"},
        headers=basic(key),
        timeout=10,
    )
    return response.status_code


def test_accounts_create_json_prints_exactly_the_account_and_two_keys(tmp_path):
    db_path = tmp_path / "t.db"
    result = run_cli("accounts", "create", "acme", "--json", "--database", sqlite_url(db_path))
    created = json.loads(result.stdout)
    assert set(created) == {"account_uuid", "event_api_key", "user_api_key"}
    assert UUID_RE.fullmatch(created["account_uuid"])
    assert KEY_RE.fullmatch(created["event_api_key"])
    assert KEY_RE.fullmatch(created["user_api_key"])
    assert created["event_api_key"] != created["user_api_key"]
    (row,) = query(db_path, "SELECT name, uuid FROM accounts")
    assert (row["name"], row["uuid"]) == ("acme", created["account_uuid"])


def test_keys_are_random_and_stored_only_as_hashes(tmp_path):
    db_path = tmp_path / "t.db"
    keys: list[str] = []
    for n in range(3):
        result = run_cli("accounts", "create", f"a{n}", "--json", "--database", sqlite_url(db_path))
        created = json.loads(result.stdout)
        keys += [created["event_api_key"], created["user_api_key"]]
    assert len(set(keys)) == len(keys)
    # No shared prefix or suffix that would cut the randomness below 128 bits.
    assert len({k[:8] for k in keys}) == len(keys)
    assert len({k[-8:] for k in keys}) == len(keys)
    stored = database_bytes(db_path)
    assert len(stored) > 0
    for key in keys:
        for form in (key, key.lower(), key.upper()):
            assert form.encode() not in stored
            assert form.encode("utf-16-le") not in stored
        assert bytes.fromhex(key) not in stored
    assert len(query(db_path, "SELECT key_hash FROM api_keys")) == len(keys)


def test_creating_an_existing_account_fails(tmp_path):
    db_url = sqlite_url(tmp_path / "t.db")
    run_cli("accounts", "create", "acme", "--json", "--database", db_url)
    again = run_cli("accounts", "create", "acme", "--json", "--database", db_url, check=False)
    assert again.returncode != 0
    assert "acme" in again.stderr
    assert "api_key" not in again.stdout
    assert len(query(tmp_path / "t.db", "SELECT id FROM accounts")) == 1


def test_if_missing_creates_once_then_exits_0(tmp_path):
    db_path = tmp_path / "t.db"
    first = run_cli(
        "accounts", "create", "default", "--if-missing", "--json", "--database", sqlite_url(db_path)
    )
    created = json.loads(first.stdout)
    second = run_cli(
        "accounts", "create", "default", "--if-missing", "--json", "--database", sqlite_url(db_path)
    )
    assert second.returncode == 0
    assert created["event_api_key"] not in second.stdout
    rows = query(db_path, "SELECT uuid FROM accounts")
    assert [r["uuid"] for r in rows] == [created["account_uuid"]]
    assert len(query(db_path, "SELECT key_hash FROM api_keys")) == 2


def test_accounts_list(tmp_path):
    db_url = sqlite_url(tmp_path / "t.db")
    made = {}
    for name in ("alpha", "beta"):
        made[name] = json.loads(
            run_cli("accounts", "create", name, "--json", "--database", db_url).stdout
        )
    plain = run_cli("accounts", "list", "--database", db_url).stdout
    for name, created in made.items():
        line = next(ln for ln in plain.splitlines() if created["account_uuid"] in ln)
        assert name in line
        assert created["event_api_key"] not in plain
    listed = [
        json.loads(ln)
        for ln in run_cli("accounts", "list", "--json", "--database", db_url).stdout.splitlines()
    ]
    assert {(a["name"], a["account_uuid"]) for a in listed} == {
        (name, created["account_uuid"]) for name, created in made.items()
    }


def test_accounts_list_of_an_empty_database(tmp_path):
    from trackway.store import open_store

    # A database as `trackway serve` leaves it on first start: the schema, no account.
    url = sqlite_url(tmp_path / "t.db")
    open_store(url).migrate()  # type: ignore[attr-defined]
    result = run_cli("accounts", "list", "--database", url)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("kind", ["event", "user"])
def test_keys_rotate_new_key_works_old_key_stops(server, account: Account, kind):
    old = account.event_key if kind == "event" else account.user_key
    other = account.user_key if kind == "event" else account.event_key
    # Warm the server's credential cache with the old key.
    assert send(server, old) == 200
    result = run_cli(
        "keys", "rotate", account.name, "--kind", kind, "--json", "--database", server.database_url
    )
    rotated = json.loads(result.stdout)
    assert rotated["account_uuid"] == account.uuid
    new = rotated[f"{kind}_api_key"]
    assert KEY_RE.fullmatch(new) and new != old
    assert send(server, new) == 200
    deadline = time.monotonic() + CREDENTIAL_TTL + 2
    while send(server, old) != 401:
        assert time.monotonic() < deadline, "the rotated-away key still works"
        time.sleep(0.25)
    # The key of the other kind is untouched.
    assert send(server, other) == 200
    assert send(server, new) == 200


def test_keys_rotate_by_account_uuid(tmp_path):
    db_path = tmp_path / "t.db"
    created = json.loads(
        run_cli("accounts", "create", "acme", "--json", "--database", sqlite_url(db_path)).stdout
    )
    before = {r["key_hash"] for r in query(db_path, "SELECT key_hash FROM api_keys")}
    run_cli(
        "keys",
        "rotate",
        created["account_uuid"],
        "--kind",
        "user",
        "--database",
        sqlite_url(db_path),
    )
    after = {r["key_hash"] for r in query(db_path, "SELECT key_hash FROM api_keys")}
    assert len(after - before) == 1


def test_keys_rotate_of_an_unknown_account_fails(tmp_path):
    url = sqlite_url(tmp_path / "t.db")
    run_cli("accounts", "create", "somebody", "--database", url)
    result = run_cli(
        "keys",
        "rotate",
        "nobody",
        "--kind",
        "event",
        "--database",
        url,
        check=False,
    )
    assert result.returncode != 0
    assert "nobody" in result.stderr


def test_keys_rotate_refuses_an_unknown_kind(tmp_path):
    db_url = sqlite_url(tmp_path / "t.db")
    run_cli("accounts", "create", "acme", "--database", db_url)
    result = run_cli("keys", "rotate", "acme", "--kind", "admin", "--database", db_url, check=False)
    assert result.returncode != 0


def test_database_url_from_the_environment(tmp_path):
    db_path = tmp_path / "from-env" / "trackway.db"
    env = {"TRACKWAY_DATABASE_URL": sqlite_url(db_path)}
    created = json.loads(run_cli("accounts", "create", "envy", "--json", env=env).stdout)
    assert db_path.exists()
    (row,) = query(db_path, "SELECT uuid FROM accounts WHERE name = 'envy'")
    assert row["uuid"] == created["account_uuid"]
    assert created["account_uuid"] in run_cli("accounts", "list", env=env).stdout


def test_default_database_is_created_under_trackway_data(tmp_path):
    created = json.loads(run_cli("accounts", "create", "local", "--json", cwd=tmp_path).stdout)
    db_path = tmp_path / "trackway-data" / "trackway.db"
    assert db_path.exists()
    (row,) = query(db_path, "SELECT uuid FROM accounts")
    assert row["uuid"] == created["account_uuid"]


def test_created_account_can_send_to_a_server_on_the_same_file(server):
    acct = create_account(server.db_path, name=f"cli-{uuid.uuid4().hex[:8]}")
    assert send(server, acct.event_key) == 200
    assert send(server, acct.user_key) == 200
    assert len(acct.events()) == 2


def test_serve_help_names_both_url_forms_and_every_settings_variable():
    import dataclasses

    from trackway.settings import Settings, env_name

    text = run_cli("serve", "--help").stdout
    assert "sqlite:///relative/path" in text and "sqlite:////absolute/path" in text
    assert "postgresql://" in text
    for field in dataclasses.fields(Settings):
        assert f"env var: {env_name(field.name)}" in " ".join(text.split()), field.name
