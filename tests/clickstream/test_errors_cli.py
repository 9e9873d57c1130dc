"""`trackway errors list|export|replay` on SQLite and PostgreSQL, against a log filled by the
real API: the same rows, filters and replay as GET /api/v1/errors and its replay."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from pathlib import Path

from .conftest import Deployment, errors_page, rejected


def test_list_export_and_replay_from_the_command_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    client, tenant = deployment.client, deployment.tenant()
    secret = tenant.verification(enable=True)
    name = "cli_" + uuid.uuid4().hex[:8]
    rejected(client, tenant, {"event": name, "customer_id": "c-1", "n": 1})
    rejected(client, tenant, {"event": name, "customer_id": "c-2", "email": "bad", "n": 2})
    signature = hashlib.sha256(("k3" + secret).encode()).hexdigest()
    signed = {"event": name, "n": 3, "verification_key": "k3", "event_signature": signature}
    assert "base" in rejected(client, tenant, signed)  # missing_identifier
    tenant.verification(enable=False)
    api_rows = errors_page(client, tenant)["errors"]

    listed = tenant.cli("errors", "list", "--account", tenant.name, "--json").stdout
    rows = [json.loads(line) for line in listed.splitlines()]
    assert [(r["id"], r["error_type"], r["raw"]) for r in rows] == [
        (r["id"], r["error_type"], r["raw"]) for r in api_rows
    ]
    text = tenant.cli("errors", "list", "--account", tenant.name, "--type", "missing_identifier")
    lines = text.stdout.splitlines()
    assert len(lines) == 1 and "missing_identifier" in lines[0] and '"n": 3' in lines[0]

    exported = tenant.cli("errors", "export", "--account", tenant.name).stdout
    records = list(csv.DictReader(io.StringIO(exported)))
    assert [(int(r["id"]), r["raw"]) for r in records] == [(r["id"], r["raw"]) for r in api_rows]
    target = tmp_path / "errors.ndjson"
    tenant.cli(
        "errors",
        "export",
        "--account",
        tenant.name,
        "--type",
        "event_verification_error",
        "--format",
        "ndjson",
        "--output",
        str(target),
    )
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in api_rows[1:]]

    usage = tenant.cli("errors", "replay", "--account", tenant.name, check=False)
    assert usage.returncode == 2
    bad_day = tenant.cli("errors", "list", "--account", tenant.name, "--day", "x", check=False)
    assert bad_day.returncode == 2 and "--day" in bad_day.stderr
    missing = tenant.cli("errors", "list", "--account", "no-such-account", check=False)
    assert missing.returncode == 1

    replayed = tenant.cli(
        "errors",
        "replay",
        "--account",
        tenant.name,
        "--type",
        "event_verification_error",
        "--json",
    )
    outcome = json.loads(replayed.stdout)
    assert (outcome["replayed"], outcome["failed"]) == (1, 1)
    statuses = {
        r["id"]: (r["status"], r["error_type"]) for r in errors_page(client, tenant)["errors"]
    }
    assert statuses == {
        api_rows[0]["id"]: ("pending", "missing_identifier"),
        api_rows[1]["id"]: ("pending", "invalid_email"),
        api_rows[2]["id"]: ("replayed", "event_verification_error"),
    }
    again = tenant.cli("errors", "replay", "--account", tenant.name, "--all").stdout
    assert again.startswith("replayed 0, still failing 2")


def test_replay_from_the_command_line_takes_the_future_bound(deployment: Deployment) -> None:
    """An event dated far ahead stays refused on replay (received when it first was), unless
    the replay is told there is no bound."""
    client, tenant = deployment.client, deployment.tenant()
    far = {"event": "launch", "cookie": "c", "timestamp": "2099-01-01T00:00:00Z"}
    assert rejected(client, tenant, far) == {
        "timestamp": ["must not be more than 24 hours in the future"]
    }
    args = ("errors", "replay", "--account", tenant.name, "--all", "--json")
    outcome = json.loads(tenant.cli(*args).stdout)
    assert (outcome["replayed"], outcome["failed"]) == (0, 1)
    outcome = json.loads(tenant.cli(*args, "--max-future-hours", "0").stdout)
    assert (outcome["replayed"], outcome["failed"]) == (1, 0)
