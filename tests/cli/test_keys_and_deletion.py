"""Key rotation with a grace period, and privacy deletion over HTTP and the CLI."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import Account, Server, basic, create_account, database_url, run_cli
from trackway.service import CREDENTIAL_TTL_SECONDS


def wait_for_status(send, status: int, seconds: float = 8.0) -> int:
    """The server caches credentials for up to 5 s: poll until `status` shows."""
    deadline = time.monotonic() + seconds
    while True:
        got = send().status_code
        if got == status or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def test_rotation_grace_period_then_rejection(server: Server, client: httpx.Client) -> None:
    account = create_account(server.db_path)

    def send(key: str):
        return lambda: client.post("/api/v1/event", json={"event": "v", "cookie": "c"},
                                   headers=basic(key))  # fmt: skip

    rotated = run_cli("keys", "rotate", account.name, "--kind", "event", "--grace", "3",
                      "--json", "--database", database_url(server.db_path))  # fmt: skip
    new_key = json.loads(rotated.stdout)["event_api_key"]
    assert send(new_key)().status_code == 200
    assert send(account.event_key)().status_code == 200  # within its grace period
    time.sleep(3.0)
    assert wait_for_status(send(account.event_key), 401) == 401
    assert send(new_key)().status_code == 200


def test_rotation_without_grace_revokes_every_earlier_key_in_a_running_server(
    server: Server, client: httpx.Client
) -> None:
    """Rotate with an hour's grace twice, then with none: all three older keys are refused by
    the running server once its credential cache (5 s) has lapsed, and the newest works."""
    account = create_account(server.db_path)
    url = database_url(server.db_path)

    def send(key: str) -> int:
        return client.post("/api/v1/event", json={"event": "v", "cookie": "c"},
                           headers=basic(key)).status_code  # fmt: skip

    def rotate(grace: str) -> str:
        rotated = run_cli("keys", "rotate", account.name, "--kind", "event", "--grace", grace,
                          "--json", "--database", url)  # fmt: skip
        return str(json.loads(rotated.stdout)["event_api_key"])

    older = [account.event_key, rotate("3600"), rotate("3600")]
    assert [send(key) for key in older] == [200, 200, 200]  # each now cached as valid
    newest = rotate("0")
    time.sleep(CREDENTIAL_TTL_SECONDS + 0.5)
    assert [send(key) for key in older] == [401, 401, 401]
    assert send(newest) == 200


def test_keys_revoke_cuts_a_named_key_in_a_running_server(
    server: Server, client: httpx.Client
) -> None:
    account = create_account(server.db_path)
    url = database_url(server.db_path)

    def send(key: str) -> int:
        return client.post("/api/v1/event", json={"event": "v", "cookie": "c"},
                           headers=basic(key)).status_code  # fmt: skip

    rotated = run_cli("keys", "rotate", account.name, "--kind", "event", "--grace", "3600",
                      "--json", "--database", url)  # fmt: skip
    new_key = json.loads(rotated.stdout)["event_api_key"]
    assert send(account.event_key) == send(new_key) == 200
    revoked = run_cli("keys", "revoke", account.name, account.event_key, "--database", url)
    assert revoked.stdout.strip() == f"event API key of {account.name} revoked"
    time.sleep(CREDENTIAL_TTL_SECONDS + 0.5)
    assert send(account.event_key) == 401
    assert send(new_key) == 200
    again = run_cli("keys", "revoke", account.name, account.event_key, "--database", url,
                    check=False)  # fmt: skip
    assert again.returncode == 1 and "no valid key like that" in again.stderr


def test_delete_customer_over_http(client: httpx.Client, account: Account) -> None:
    for body in ({"event": "view", "cookie": "del-1"},
                 {"event": "identify", "cookie": "del-1", "email": "gone@x.io"}):  # fmt: skip
        assert (
            client.post("/api/v1/event", json=body, headers=basic(account.event_key)).status_code
            == 200
        )
    user = basic(account.user_key)
    found = client.get("/api/v1/customers", params={"email": "gone@x.io"}, headers=user)
    uuid = found.json()["customer"]["uuid"]
    # The event key may not delete; another account's user key finds nothing to delete.
    assert (
        client.delete(f"/api/v1/customers/{uuid}", headers=basic(account.event_key)).status_code
        == 403
    )
    deleted = client.delete(f"/api/v1/customers/{uuid}", headers=user)
    assert deleted.status_code == 200
    assert deleted.json() == {"status": "ok", "uuid": uuid, "events_deleted": 2}
    assert client.get(f"/api/v1/customers/{uuid}", headers=user).status_code == 404
    assert (
        client.get("/api/v1/customers", params={"cookie": "del-1"}, headers=user).status_code == 404
    )
    assert client.get("/api/v1/event/history", params={"event_name": "identify"},
                      headers=user).status_code == 404  # fmt: skip
    assert client.delete(f"/api/v1/customers/{uuid}", headers=user).status_code == 404
    # The daily counts stay.
    summary = client.post("/api/v1/event/summary.json", headers=user).json()
    assert summary["stats"]["view"]["count"] == 1


def test_delete_is_scoped_to_the_account(server: Server, client: httpx.Client) -> None:
    one, two = create_account(server.db_path), create_account(server.db_path)
    client.post("/api/v1/event", json={"event": "view", "cookie": "mine"},
                headers=basic(one.event_key))  # fmt: skip
    uuid = client.get("/api/v1/customers", params={"cookie": "mine"},
                      headers=basic(one.user_key)).json()["customer"]["uuid"]  # fmt: skip
    assert (
        client.delete(f"/api/v1/customers/{uuid}", headers=basic(two.user_key)).status_code == 404
    )
    assert client.get(f"/api/v1/customers/{uuid}", headers=basic(one.user_key)).status_code == 200


def test_delete_customer_with_the_cli(
    server: Server, client: httpx.Client, account: Account
) -> None:
    client.post("/api/v1/event", json={"event": "view", "customer_id": "cli-7"},
                headers=basic(account.event_key))  # fmt: skip
    done = run_cli("customers", "delete", "--account", account.name, "--customer-id", "cli-7",
                   "--json", "--database", database_url(server.db_path))  # fmt: skip
    assert json.loads(done.stdout)["events_deleted"] == 1
    assert client.get("/api/v1/customers", params={"customer_id": "cli-7"},
                      headers=basic(account.user_key)).status_code == 404  # fmt: skip
    again = run_cli("customers", "delete", "--account", account.name, "--customer-id", "cli-7",
                    "--database", database_url(server.db_path), check=False)  # fmt: skip
    assert again.returncode != 0 and "no such customer" in again.stderr
