"""Event verification: `trackway accounts verification ACCOUNT --enable` prints a secret, and
from then on every event of that account (POST /api/v1/event, /api/v1/bulkevents, the pixel)
must carry `verification_key` and `event_signature` = hex SHA-256(verification_key + secret).

The server caches an account's credentials for up to 5 s. The tests enable verification on a
fresh account before its key is ever used, so no stale credential can be cached; the one test
that flips the setting under a running server polls until the change shows."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from conftest import Account, basic, database_url, query, run_cli
from support import BLANK, EVENT_URL, OK, bulk

VERIFICATION_ERROR = "event_verification_error"
MISMATCH = ["does not match the verification key"]
# The server keeps credentials for up to 5 s; a changed setting must show within this.
SETTLE_SECONDS = 8.0


def sign(verification_key: str, secret: str) -> str:
    return hashlib.sha256((verification_key + secret).encode()).hexdigest()


def verification(account: Account, *flags: str, check: bool = True):
    return run_cli(
        "accounts",
        "verification",
        account.name,
        *flags,
        "--database",
        database_url(account.db_path),
        check=check,
    )


def enable(account: Account) -> str:
    result = verification(account, "--enable")
    secret = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32,}", secret), result.stdout
    return secret


def signed(secret: str, **body: Any) -> dict[str, Any]:
    key = body.pop("verification_key", None) or uuid.uuid4().hex
    return {**body, "verification_key": key, "event_signature": sign(key, secret)}


def post(client: httpx.Client, account: Account, body: dict[str, Any]) -> httpx.Response:
    return client.post(EVENT_URL, json=body, headers=basic(account.event_key))


def pixel(client: httpx.Client, account: Account, **params: str) -> None:
    response = client.get("/unity.gif?" + urlencode({"x": account.event_key, **params}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"


def verification_errors(account: Account) -> int:
    return sum(n for (_, t), n in account.error_daily().items() if t == VERIFICATION_ERROR)


def stored_cookies(account: Account) -> list[str]:
    return [json.loads(r["body"]).get("cookie") for r in account.events()]


@dataclass
class Verified:
    """The module's account with verification on, and what it held when a test began."""

    account: Account
    secret: str
    last_event_id: int = 0
    last_error_id: int = 0
    verification_errors: int = 0

    def new_cookies(self) -> list[str]:
        rows = [r for r in self.account.events() if r["id"] > self.last_event_id]
        return [json.loads(r["body"]).get("cookie") for r in rows]

    def new_errors(self) -> list[tuple[str, dict[str, Any]]]:
        rows = [r for r in self.account.error_log() if r["id"] > self.last_error_id]
        return [(r["error_type"], json.loads(r["errors"])) for r in rows]

    def new_verification_errors(self) -> int:
        return verification_errors(self.account) - self.verification_errors


@pytest.fixture(scope="module")
def verified_account(account_supply) -> tuple[Account, str]:
    """An account with verification on, enabled before the server has seen its key."""
    account = account_supply.take()
    return account, enable(account)


@pytest.fixture
def v(verified_account) -> Verified:
    account, secret = verified_account
    events, errors = account.events(), account.error_log()
    return Verified(
        account,
        secret,
        last_event_id=events[-1]["id"] if events else 0,
        last_error_id=errors[-1]["id"] if errors else 0,
        verification_errors=verification_errors(account),
    )


# --- the CLI -------------------------------------------------------------------------------


def test_enable_prints_a_new_secret_each_time_and_disable_turns_it_off(account):
    first = enable(account)
    by_uuid = run_cli(
        "accounts",
        "verification",
        account.uuid,
        "--enable",
        "--database",
        database_url(account.db_path),
    )
    assert re.fullmatch(r"[0-9a-f]{32,}\n", by_uuid.stdout)
    second = by_uuid.stdout.strip()
    assert first != second
    rows = query(
        account.db_path, "SELECT verification_secret FROM accounts WHERE id = ?", [account.id]
    )
    assert rows[0]["verification_secret"] == second
    off = verification(account, "--disable")
    assert not re.search(r"[0-9a-f]{32,}", off.stdout)
    rows = query(
        account.db_path, "SELECT verification_secret FROM accounts WHERE id = ?", [account.id]
    )
    assert rows[0]["verification_secret"] is None


def test_cli_errors(v):
    # Neither --enable nor --disable: an error, and the setting is left alone.
    assert verification(v.account, check=False).returncode != 0
    unknown = run_cli(
        "accounts",
        "verification",
        "no-such-account-" + uuid.uuid4().hex,
        "--enable",
        "--database",
        database_url(v.account.db_path),
        check=False,
    )
    assert unknown.returncode != 0
    assert "not found" in (unknown.stderr + unknown.stdout).lower()
    rows = query(
        v.account.db_path, "SELECT verification_secret FROM accounts WHERE id = ?", [v.account.id]
    )
    assert rows[0]["verification_secret"] == v.secret


# --- POST /api/v1/event --------------------------------------------------------------------


def test_off_by_default(client, account):
    assert post(client, account, {"event": "view", "cookie": "ck-1"}).json() == OK
    assert stored_cookies(account) == ["ck-1"]


def test_unsigned_event_is_400_naming_event_signature(client, v):
    response = post(client, v.account, {"event": "view", "cookie": "ck-1"})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["event_signature"] == BLANK
    assert v.new_cookies() == []
    ((error_type, logged),) = v.new_errors()
    assert error_type == VERIFICATION_ERROR
    assert "event_signature" in logged
    assert v.new_verification_errors() == 1


def test_key_without_signature_is_400_naming_event_signature(client, v):
    response = post(client, v.account, {"event": "view", "cookie": "c", "verification_key": "k1"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"event_signature": BLANK}
    assert v.new_verification_errors() == 1


def test_signature_without_key_is_400(client, v):
    body = {"event": "view", "cookie": "c", "event_signature": sign("", v.secret)}
    response = post(client, v.account, body)
    assert response.status_code == 400
    assert "verification_key" in response.json()["errors"]
    assert v.new_cookies() == []
    assert v.new_verification_errors() == 1


def test_the_verification_error_comes_first(client, v):
    # Unsigned and without an identifier: counted as a verification error.
    response = post(client, v.account, {"event": "view"})
    assert response.status_code == 400
    assert "event_signature" in response.json()["errors"]
    assert [t for t, _ in v.new_errors()] == [VERIFICATION_ERROR]


WRONG_SIGNATURES: dict[str, Callable[[str, str], Any]] = {
    "random-hex": lambda key, secret: hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
    "secret-then-key": lambda key, secret: sign(secret, key),
    "other-key": lambda key, secret: sign(key + "x", secret),
    "other-secret": lambda key, secret: sign(key, secret + "0"),
    "key-alone": lambda key, secret: hashlib.sha256(key.encode()).hexdigest(),
    "md5": lambda key, secret: hashlib.md5((key + secret).encode()).hexdigest(),
    "sha1": lambda key, secret: hashlib.sha1((key + secret).encode()).hexdigest(),
    "truncated": lambda key, secret: sign(key, secret)[:-1],
    "with-prefix": lambda key, secret: "sha256=" + sign(key, secret),
    "the-secret": lambda key, secret: secret,
    "a-number": lambda key, secret: 12345,
    "a-list": lambda key, secret: [sign(key, secret)],
    "null": lambda key, secret: None,
    "empty": lambda key, secret: "",
}


@pytest.mark.parametrize("wrong", WRONG_SIGNATURES, ids=list(WRONG_SIGNATURES))
def test_wrong_signature_is_400(client, v, wrong):
    key = "vk-" + uuid.uuid4().hex
    body = {
        "event": "view",
        "cookie": "ck-1",
        "verification_key": key,
        "event_signature": WRONG_SIGNATURES[wrong](key, v.secret),
    }
    response = post(client, v.account, body)
    assert response.status_code == 400, response.text
    errors = response.json()["errors"]
    assert list(errors) == ["event_signature"]
    assert errors["event_signature"] in (MISMATCH, BLANK)
    assert v.new_cookies() == []
    assert v.new_verification_errors() == 1


def test_correct_signature_is_200(client, v):
    first = signed(v.secret, event="view", cookie="ck-1")
    second = signed(v.secret, event="purchase", cookie="ck-2", verification_key="order-42 ✓")
    assert post(client, v.account, first).json() == OK
    response = post(client, v.account, second)
    assert (response.status_code, response.json()) == (200, OK)
    assert v.new_cookies() == ["ck-1", "ck-2"]
    assert v.new_errors() == []


def test_a_signature_is_not_bound_to_one_event(client, v):
    # The signature signs the verification key, not the event: a key and its signature may be
    # sent again (a retry, a page's second event).
    proof = signed(v.secret)
    for cookie in ("ck-1", "ck-2"):
        assert post(client, v.account, {"event": "view", "cookie": cookie, **proof}).json() == OK
    assert v.new_cookies() == ["ck-1", "ck-2"]


def test_a_signed_event_still_obeys_the_other_rules(client, v):
    response = post(client, v.account, signed(v.secret, event="view"))
    assert response.status_code == 400
    assert "event_signature" not in response.json()["errors"]
    assert v.new_verification_errors() == 0


def test_verification_of_one_account_does_not_touch_another(client, v, account):
    assert post(client, account, {"event": "view", "cookie": "ck-1"}).json() == OK
    assert post(client, v.account, {"event": "view", "cookie": "ck-1"}).status_code == 400
    assert stored_cookies(account) == ["ck-1"]


# --- POST /api/v1/bulkevents ---------------------------------------------------------------


def test_bulk_all_signed_is_200(client, v):
    events = [signed(v.secret, event="view", cookie=f"ck-{i}") for i in range(5)]
    response = bulk(client, v.account.event_key, events)
    assert (response.status_code, response.json()) == (200, {"status": "ok", "count": 5})
    assert v.new_cookies() == [f"ck-{i}" for i in range(5)]


def test_bulk_stores_the_signed_and_answers_the_others(client, v):
    key = uuid.uuid4().hex
    events = [
        signed(v.secret, event="view", cookie="ck-0"),
        {"event": "view", "cookie": "ck-1"},
        {"event": "view", "cookie": "ck-2", "verification_key": key, "event_signature": "ab"},
        signed(v.secret, event="view", cookie="ck-3"),
    ]
    response = bulk(client, v.account.event_key, events)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["status"], answer["count"]) == ("partial", 2)
    assert [e["index"] for e in answer["errors"]] == [1, 2]
    assert answer["errors"][0]["errors"]["event_signature"] == BLANK
    assert answer["errors"][1]["errors"] == {"event_signature": MISMATCH}
    assert v.new_cookies() == ["ck-0", "ck-3"]
    assert v.new_verification_errors() == 2
    assert [t for t, _ in v.new_errors()] == [VERIFICATION_ERROR] * 2


# --- the pixel -----------------------------------------------------------------------------


def test_pixel_stores_signed_events_only(client, v):
    key = "page-" + uuid.uuid4().hex
    good = sign(key, v.secret)
    pixel(client, v.account, e="view", k="ck-signed", verification_key=key, event_signature=good)
    pixel(client, v.account, e="view", k="ck-unsigned")
    pixel(client, v.account, e="view", k="ck-wrong", verification_key=key, event_signature="00")
    pixel(client, v.account, e="view", k="ck-nokey", event_signature=good)
    assert v.new_cookies() == ["ck-signed"]
    assert v.new_verification_errors() == 3
    logged = v.new_errors()
    assert [t for t, _ in logged] == [VERIFICATION_ERROR] * 3
    assert "event_signature" in logged[0][1] and "event_signature" in logged[1][1]


# --- changing the setting under a running server -------------------------------------------


def test_the_running_server_follows_the_setting(client, account_supply):
    """Three accounts, each already known to the server: one turned on, one off, one given a
    new secret. Within the cache lifetime each behaves as its new setting says."""
    turned_on: Account = account_supply.take()
    turned_off: Account = account_supply.take()
    rotated: Account = account_supply.take()
    old_off_secret = enable(turned_off)
    old_secret = enable(rotated)
    assert post(client, turned_on, {"event": "view", "cookie": "before"}).json() == OK
    assert post(client, turned_off, {"event": "view", "cookie": "before"}).status_code == 400
    assert post(client, rotated, signed(old_secret, event="view", cookie="before")).json() == OK

    new_secret = enable(turned_on)
    verification(turned_off, "--disable")
    rotated_secret = enable(rotated)
    changed = time.monotonic()

    def done() -> bool:
        return (
            post(client, turned_on, {"event": "view", "cookie": "probe"}).status_code == 400
            and post(client, turned_off, {"event": "view", "cookie": "probe"}).status_code == 200
            and post(client, rotated, signed(old_secret, event="view", cookie="probe")).status_code
            == 400
        )

    while not done():
        assert time.monotonic() - changed < SETTLE_SECONDS, "the setting did not take effect"
        time.sleep(0.25)
    # And stays so.
    assert post(client, turned_on, signed(new_secret, event="view", cookie="after")).json() == OK
    assert post(client, turned_off, {"event": "view", "cookie": "after"}).json() == OK
    assert (
        post(client, turned_off, signed(old_off_secret, event="view", cookie="after2")).json() == OK
    )
    assert post(client, rotated, signed(rotated_secret, event="view", cookie="after")).json() == OK
    assert post(client, rotated, signed(old_secret, event="view", cookie="x")).status_code == 400
    for acct in (turned_on, turned_off, rotated):
        assert stored_cookies(acct)[-1].startswith("after")
