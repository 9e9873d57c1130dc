"""Commands that read, or change what an account has, refuse a database that does not exist:
exit status 2, one clear line, and nothing created (no file, no directory, no output file).
Only `serve` and `accounts create` make a database. Run from another directory, a mistyped
--database or TRACKWAY_DATABASE_URL would otherwise make a new empty one and answer from it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import fresh_postgres_database, require_postgres, run_cli, sqlite_url

HINT = "(give --database or TRACKWAY_DATABASE_URL)"

# Every command but `serve` and `accounts create`, with the arguments it needs; FILE is an
# NDJSON file that exists, OUT a path that must stay absent.
COMMANDS = [
    ["accounts", "list"],
    ["accounts", "list", "--json"],
    ["accounts", "verification", "shop", "--enable"],
    ["keys", "rotate", "shop", "--kind", "event"],
    ["customers", "delete", "--account", "shop", "--email", "ann@example.com"],
    ["events", "list", "--account", "shop"],
    ["events", "rename", "view", "--display-name", "Viewed", "--account", "shop"],
    ["events", "archive", "view", "--account", "shop"],
    ["events", "unarchive", "view", "--account", "shop"],
    ["import", "FILE", "--account", "shop"],
    ["export", "--account", "shop"],
    ["errors", "list", "--account", "shop"],
    ["errors", "export", "--account", "shop", "--output", "OUT"],
    ["errors", "replay", "--account", "shop", "--all"],
]


def tree(directory: Path) -> dict[str, str]:
    """Every file under `directory` with a hash of its bytes; directories as themselves."""
    return {
        str(p.relative_to(directory)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        )
        for p in sorted(directory.rglob("*"))
    }


def args_in(directory: Path, command: list[str]) -> list[str]:
    source = directory / "events.ndjson"
    if not source.exists():
        source.write_text(json.dumps({"event": "view", "cookie": "c"}) + "\n")
    out = directory / "errors.csv"
    return [str(source) if a == "FILE" else str(out) if a == "OUT" else a for a in command]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_missing_sqlite_database_is_refused_and_nothing_is_made(tmp_path, command):
    missing = tmp_path / "typo" / "trackway.db"
    args = args_in(tmp_path, command)
    before = tree(tmp_path)
    result = run_cli(*args, "--database", sqlite_url(missing), check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip() == f"Error: no Trackway database at {missing.resolve()} {HINT}"
    assert tree(tmp_path) == before


def test_the_default_database_of_another_directory_is_refused(tmp_path):
    # No --database: ./trackway-data/trackway.db of the directory the command runs in.
    for env in ({}, {"TRACKWAY_DATABASE_URL": "sqlite:///elsewhere/trackway.db"}):
        result = run_cli("accounts", "list", cwd=tmp_path, env=env, check=False)
        assert result.returncode == 2
        relative = "elsewhere" if env else "trackway-data"
        expected = (tmp_path / relative / "trackway.db").resolve()
        assert f"no Trackway database at {expected} {HINT}" in result.stderr
        assert list(tmp_path.iterdir()) == []


def test_accounts_create_makes_the_database_and_then_the_others_use_it(tmp_path):
    db = tmp_path / "new" / "trackway.db"
    url = sqlite_url(db)
    created = json.loads(run_cli("accounts", "create", "shop", "--json", "--database", url).stdout)
    assert db.exists()
    listed = run_cli("accounts", "list", "--json", "--database", url)
    assert json.loads(listed.stdout)["account_uuid"] == created["account_uuid"]
    rotated = run_cli("keys", "rotate", "shop", "--kind", "user", "--database", url)
    assert "new user API key of shop" in rotated.stdout


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 100, None])
def test_a_file_that_is_not_a_trackway_database_is_refused_and_left_alone(tmp_path, content):
    path = tmp_path / "other.db"
    if content is None:
        # Another application's SQLite database.
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
            conn.execute("INSERT INTO notes VALUES ('mine')")
            conn.execute("PRAGMA user_version = 3")
        conn.close()
    else:
        path.write_bytes(content)
    before = tree(tmp_path)
    result = run_cli("accounts", "list", "--database", sqlite_url(path), check=False)
    assert result.returncode == 2, result.stderr
    assert f"no Trackway database at {path.resolve()} {HINT}" in result.stderr
    assert tree(tmp_path) == before


def test_a_postgresql_database_without_the_schema_is_refused_and_left_empty():
    import psycopg

    url = fresh_postgres_database(require_postgres())
    name = url.rsplit("/", 1)[1]
    for command in (["accounts", "list"], ["keys", "rotate", "shop", "--kind", "event"]):
        result = run_cli(*command, "--database", url, check=False)
        assert result.returncode == 2, result.stderr
        assert f"the PostgreSQL database {name} holds no Trackway schema {HINT[:-1]};" in (
            result.stderr
        )
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (0,)
    # accounts create makes the schema; then the others work.
    run_cli("accounts", "create", "shop", "--database", url)
    assert "shop" in run_cli("accounts", "list", "--database", url).stdout


def test_an_unreachable_postgresql_is_said_so():
    result = run_cli(
        "accounts", "list", "--database", "postgresql://nobody@127.0.0.1:1/none", check=False
    )
    assert result.returncode == 1
    assert "PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
