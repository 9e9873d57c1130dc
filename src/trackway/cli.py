"""The `trackway` command: serve, accounts, keys."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from trackway import transfer
from trackway.domain.errors import (
    AccountExists,
    AccountNotFound,
    DatabaseMissing,
    NotFound,
    StoreUnavailable,
)
from trackway.domain.keys import KEY_KINDS, hash_key, new_key
from trackway.logs import logging_config
from trackway.service import Trackway
from trackway.settings import Settings, max_ahead_ms
from trackway.store import Store, open_store, require_database
from trackway.store.sqlite.store import SQLiteStore
from trackway.store.sqlite.supervisor import SOCKET_ENV, WriterSupervisor

T = TypeVar("T")
DEFAULTS = Settings()

database_option = click.option(
    "--database",
    "database_url",
    envvar="TRACKWAY_DATABASE_URL",
    default=DEFAULTS.database_url,
    show_default=True,
    help="sqlite:///relative/path, sqlite:////absolute/path or "
    "postgresql://user:pass@host:5432/db.",
)

max_future_hours_option = click.option(
    "--max-future-hours",
    envvar="TRACKWAY_MAX_FUTURE_HOURS",
    default=DEFAULTS.max_future_hours,
    type=click.IntRange(0),
    show_default=True,
    help="Refuse events whose timestamp is more than this many hours after their receipt "
    "(after clock-skew correction); 0: no bound.",
)


max_event_attributes_option = click.option(
    "--max-event-attributes",
    envvar="TRACKWAY_MAX_EVENT_ATTRIBUTES",
    default=DEFAULTS.max_event_attributes,
    type=click.IntRange(1),
    show_default=True,
    help="Refuse events of more top-level fields than this (invalid_event_attributes).",
)
max_attribute_names_option = click.option(
    "--max-attribute-names",
    envvar="TRACKWAY_MAX_ATTRIBUTE_NAMES",
    default=DEFAULTS.max_attribute_names,
    type=click.IntRange(1),
    show_default=True,
    help="Custom attribute names one account may fix; an event bringing more is refused "
    "(invalid_event_attributes).",
)


class SettingsCommand(click.Command):
    """A command whose every option shows the TRACKWAY_* variable that also sets it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.envvar:
                param.show_envvar = True


class _NoDatabase(click.ClickException):
    # A usage error (a wrong --database), and not import's exit status 1 (lines rejected).
    exit_code = 2


def existing_database(database_url: str) -> None:
    """Refuse, creating nothing, a database that does not exist: only `serve` and `accounts
    create` make one."""
    try:
        require_database(database_url)
    except DatabaseMissing as exc:
        raise _NoDatabase(str(exc)) from None
    except (StoreUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def with_store(
    database_url: str,
    action: Callable[[Store], Awaitable[T]],
    *,
    create: bool = False,
    max_attribute_names: int = DEFAULTS.max_attribute_names,
) -> T:
    """Run `action` on the store of `database_url`; one that does not exist is refused unless
    `create`."""
    if not create:
        existing_database(database_url)

    async def run() -> T:
        store = open_store(database_url, max_attribute_names=max_attribute_names)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (AccountNotFound, AccountExists, StoreUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="trackway")
def main() -> None:
    """Trackway: a self-hosted event-tracking API."""


@main.command(cls=SettingsCommand, context_settings={"max_content_width": 100})
@click.option(
    "--host",
    envvar="TRACKWAY_HOST",
    default=DEFAULTS.host,
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    envvar="TRACKWAY_PORT",
    default=DEFAULTS.port,
    type=int,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    envvar="TRACKWAY_WORKERS",
    default=DEFAULTS.workers,
    type=click.IntRange(1),
    show_default=True,
    help="Worker processes sharing the database.",
)
@database_option
@click.option(
    "--max-body-bytes",
    envvar="TRACKWAY_MAX_BODY_BYTES",
    default=DEFAULTS.max_body_bytes,
    type=click.IntRange(1024),
    show_default=True,
    help="Largest request body; larger ones get 413 unread.",
)
@click.option(
    "--log-level",
    envvar="TRACKWAY_LOG_LEVEL",
    default=DEFAULTS.log_level,
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--max-bulk-events",
    envvar="TRACKWAY_MAX_BULK_EVENTS",
    default=DEFAULTS.max_bulk_events,
    type=click.IntRange(1),
    show_default=True,
    help="Events one bulk call may carry; more is answered 413.",
)
@click.option(
    "--show-events-per-hour",
    envvar="TRACKWAY_SHOW_EVENTS_PER_HOUR",
    default=DEFAULTS.show_events_per_hour,
    type=click.IntRange(0),
    show_default=True,
    help="Calls of show_events per account and hour, shared by all workers.",
)
@click.option(
    "--ingest-rate-limit",
    envvar="TRACKWAY_INGEST_RATE_LIMIT",
    default=DEFAULTS.ingest_rate_limit,
    type=click.IntRange(0),
    show_default=True,
    help="Events a second per account (0: none); over it 429 with Retry-After.",
)
@click.option(
    "--body-timeout",
    envvar="TRACKWAY_BODY_TIMEOUT",
    default=DEFAULTS.body_timeout,
    type=click.IntRange(1),
    show_default=True,
    help="Seconds a client may pause while sending a body; then 408 and the connection closes.",
)
@click.option(
    "--header-timeout",
    envvar="TRACKWAY_HEADER_TIMEOUT",
    default=DEFAULTS.header_timeout,
    type=click.IntRange(1),
    show_default=True,
    help="Seconds a connection may take to send complete request headers; then it is closed.",
)
@click.option(
    "--keep-alive-timeout",
    envvar="TRACKWAY_KEEP_ALIVE_TIMEOUT",
    default=DEFAULTS.keep_alive_timeout,
    type=click.IntRange(1),
    show_default=True,
    help="Seconds an idle keep-alive connection stays open between requests.",
)
@click.option(
    "--max-connections",
    envvar="TRACKWAY_MAX_CONNECTIONS",
    default=DEFAULTS.max_connections,
    type=click.IntRange(16),
    show_default=True,
    help="Concurrent connections per worker; at the cap a new one replaces the oldest idle one.",
)
@click.option(
    "--cors-origins",
    envvar="TRACKWAY_CORS_ORIGINS",
    default=DEFAULTS.cors_origins,
    show_default=True,
    help="Page origins (comma-separated, or *) whose scripts may call the ingest paths.",
)
@click.option(
    "--forwarded-allow-ips",
    envvar="TRACKWAY_FORWARDED_ALLOW_IPS",
    default=DEFAULTS.forwarded_allow_ips,
    show_default=True,
    help="Comma-separated proxy addresses (or *) whose X-Forwarded-For is trusted; empty: none.",
)
@max_future_hours_option
@max_event_attributes_option
@max_attribute_names_option
@click.option(
    "--log-format",
    envvar="TRACKWAY_LOG_FORMAT",
    default=DEFAULTS.log_format,
    type=click.Choice(["text", "json"]),
    show_default=True,
    help="json: one JSON object a line.",
)
@click.option(
    "--access-log/--no-access-log",
    envvar="TRACKWAY_ACCESS_LOG",
    default=DEFAULTS.access_log,
    show_default=True,
    help="One log line per request.",
)
def serve(**options: Any) -> None:
    """Run the HTTP API. Every option is also an environment variable (shown with each); the
    option wins. The database is created, and its schema migrated, at start."""
    import uvicorn

    from trackway.http.protocol import raise_file_limit
    from trackway.http.server import server_options

    settings = Settings(**options)
    try:
        settings.check()
        # Migrate once here, so that N workers starting together find the schema ready.
        store = open_store(settings.database_url)
        if hasattr(store, "migrate"):
            store.migrate()
    except (ValueError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    # Every worker process builds its app from the environment: hand the settings down.
    os.environ.update(settings.to_env())
    # With several workers each writes its metrics here and /metrics in any of them sums them
    # all; one worker keeps them in its own memory.
    metrics_dir = tempfile.mkdtemp(prefix="trackway-metrics-") if settings.workers > 1 else None
    if metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    raise_file_limit()
    supervisor = None
    if isinstance(store, SQLiteStore):
        # One writer process for the file, beside the API workers, watched and restarted.
        supervisor = WriterSupervisor(
            settings.database_url, store.path.resolve(), settings.log_level, settings.log_format
        )
        supervisor.start()
        os.environ[SOCKET_ENV] = supervisor.socket_path
    # uvicorn (one worker) re-raises the signal it stopped on once it is done: caught here, so
    # that the writer is stopped after the API workers, then raised again.
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda number, frame: caught.append(number))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        uvicorn.run(
            "trackway.http.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
            log_config=logging_config(settings.log_level, settings.log_format),
            **server_options(settings),
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGTERM in caught:
        signal.raise_signal(signal.SIGTERM)


@main.command("writer", hidden=True)
@database_option
@click.option("--socket", "socket_path", required=True, help="Unix socket to listen on.")
@click.option("--log-level", default=DEFAULTS.log_level)
@click.option("--log-format", default=DEFAULTS.log_format)
@max_attribute_names_option
def writer(
    database_url: str, socket_path: str, log_level: str, log_format: str, max_attribute_names: int
) -> None:
    """The writer process of a SQLite database (started and watched by `serve`, whose
    settings it inherits from the environment)."""
    import logging.config

    from trackway.store.sqlite.store import path_from_url
    from trackway.store.sqlite.writer_process import run_writer

    logging.config.dictConfig(logging_config(log_level, log_format))
    run_writer(path_from_url(database_url), socket_path, max_attribute_names)


@main.group()
def accounts() -> None:
    """Create and list accounts."""


@accounts.command("create")
@click.argument("name")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing (exit 0) when an account of that name exists already.",
)
def accounts_create(name: str, database_url: str, as_json: bool, if_missing: bool) -> None:
    """Create an account and print its two keys (shown this once: only hashes are stored)."""
    event_key, user_key = new_key(), new_key()

    async def create(store: Store) -> Any:
        try:
            return await store.create_account(name, hash_key(event_key), hash_key(user_key))
        except AccountExists:
            if if_missing:
                return None
            raise

    account = with_store(database_url, create, create=True)
    if account is None:
        click.echo(
            f"Account {name!r} exists already; its keys were shown when it was created "
            f"(new ones: trackway keys rotate {name} --kind event|user).",
            err=True,
        )
        return
    keys = {"account_uuid": account.uuid, "event_api_key": event_key, "user_api_key": user_key}
    if as_json:
        click.echo(json.dumps(keys))
    else:
        click.echo(
            f"Account {name} created ({account.uuid}). Keep these keys; they are not shown again."
        )
        click.echo(f"  event API key: {event_key}   (send events)")
        click.echo(f"  user API key:  {user_key}   (send events and read)")


@accounts.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
def accounts_list(database_url: str, as_json: bool) -> None:
    """List accounts."""
    from trackway.domain.timestamps import format_ms

    for account in with_store(database_url, lambda store: store.list_accounts()):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "account_uuid": account.uuid,
                        "name": account.name,
                        "created_at": format_ms(account.created_ms),
                    }
                )
            )
        else:
            click.echo(f"{account.uuid}  {account.name}  {format_ms(account.created_ms)}")


@accounts.command("verification")
@click.argument("account")
@click.option(
    "--enable/--disable",
    required=True,
    help="--enable prints a new secret; every event must then be signed with it.",
)
@database_option
def accounts_verification(account: str, enable: bool, database_url: str) -> None:
    """Turn event verification of ACCOUNT on or off. When on, every event must carry
    `verification_key` and `event_signature` = hex SHA-256 of (verification_key + secret)."""
    secret = new_key() if enable else None

    async def change(store: Store) -> None:
        await store.set_verification_secret(await store.find_account(account), secret)

    with_store(database_url, change)
    if secret is None:
        click.echo(f"event verification of {account} is off")
    else:
        click.echo(secret)


@main.group()
def keys() -> None:
    """Rotate and revoke API keys."""


@keys.command("rotate")
@click.argument("account")
@click.option("--kind", type=click.Choice(KEY_KINDS), required=True)
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--grace",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Seconds the old key keeps working, so that senders can switch over.",
)
def keys_rotate(account: str, kind: str, database_url: str, as_json: bool, grace: int) -> None:
    """Give ACCOUNT (name or uuid) a new key of KIND; the old one stops working after --grace
    seconds (and within 5 s more in running servers, whose credential cache lasts that long)."""
    key = new_key()

    async def rotate(store: Store) -> str:
        found = await store.find_account(account)
        await store.replace_key(found, kind, hash_key(key), grace * 1000)
        return found.uuid

    account_uuid = with_store(database_url, rotate)
    if as_json:
        click.echo(json.dumps({"account_uuid": account_uuid, f"{kind}_api_key": key}))
    else:
        click.echo(f"new {kind} API key of {account}: {key}")


@keys.command("revoke")
@click.argument("account")
@click.argument("key")
@database_option
def keys_revoke(account: str, key: str, database_url: str) -> None:
    """KEY of ACCOUNT (name or uuid) stops working now, also one still in a grace period (and
    within 5 s more in running servers, whose credential cache lasts that long). Revoking the
    current key leaves the account without a key of that kind until `keys rotate`."""

    async def revoke(store: Store) -> str | None:
        return await store.revoke_key(await store.find_account(account), hash_key(key))

    kind = with_store(database_url, revoke)
    if kind is None:
        raise click.ClickException(f"{account} has no valid key like that (revoked already?)")
    click.echo(f"{kind} API key of {account} revoked")


@main.group()
def customers() -> None:
    """List, search and show customers; delete them (privacy requests)."""


_PAGE_OPTION_NAMES = {"limit": "--limit", "cursor": "--cursor", "q": "TEXT"}


def _customer_read(
    database_url: str,
    account: str,
    read: Callable[[Trackway, Any], Awaitable[T]],
    options: dict[str, str] = _PAGE_OPTION_NAMES,
) -> T:
    """Run one read of the service for ACCOUNT; a bad parameter is a usage error naming its
    option, an unknown customer an error."""
    from trackway.domain.errors import InvalidRequest

    async def work(store: Store) -> T:
        trackway = Trackway(store, Settings(database_url=database_url))
        return await read(trackway, await store.find_account(account))

    try:
        return with_store(database_url, work)
    except InvalidRequest as exc:
        problems = "; ".join(
            f"{options.get(field, field)} {', '.join(m)}" for field, m in exc.errors.items()
        )
        raise click.UsageError(problems) from None
    except NotFound as exc:
        raise click.ClickException(exc.what.lower()) from None


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_customers(page: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(page))
        return
    rows = [
        [
            c["uuid"],
            c["customer_id"] or "-",
            c["email"] or "-",
            f"{c['matched']['kind']}={c['matched']['value']}" if c["matched"] else "-",
            c["last_seen_at"],
        ]
        for c in page["customers"]
    ]
    _table(rows, ["UUID", "CUSTOMER_ID", "EMAIL", "MATCHED", "LAST_SEEN"])
    if page["next"]:
        click.echo(f"more: --cursor {page['next']}")


_page_options = [
    click.option("--account", required=True, help="Account name or uuid."),
    click.option("--limit", default=None, help="Customers per page (default 50, at most 200)."),
    click.option("--cursor", default=None, help="The cursor a previous page printed."),
    database_option,
    click.option("--json", "as_json", is_flag=True, help="Print the page as one JSON object."),
]


def _with_page_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_page_options):
        command = option(command)
    return command


@customers.command("list")
@_with_page_options
def customers_list(
    account: str, limit: str | None, cursor: str | None, database_url: str, as_json: bool
) -> None:
    """Every customer of ACCOUNT, newest activity first, one page."""
    params = {"limit": limit, "cursor": cursor}
    page = _customer_read(database_url, account, lambda t, a: t.search_customers(a, params))
    _print_customers(page, as_json)


@customers.command("search")
@click.argument("text")
@_with_page_options
def customers_search(
    text: str,
    account: str,
    limit: str | None,
    cursor: str | None,
    database_url: str,
    as_json: bool,
) -> None:
    """Customers whose customer_id, email (any case), device_id or cookie starts with TEXT."""
    params = {"q": text, "limit": limit, "cursor": cursor}
    page = _customer_read(database_url, account, lambda t, a: t.search_customers(a, params))
    _print_customers(page, as_json)


@customers.command("show")
@click.argument("uuid")
@click.option("--account", required=True, help="Account name or uuid.")
@click.option("--events", "events_limit", default="10", help="Newest events shown (1-200).")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def customers_show(
    uuid: str, account: str, events_limit: str, database_url: str, as_json: bool
) -> None:
    """The profile of customer UUID, what explains it, and its newest events."""

    async def read(trackway: Trackway, found: Any) -> dict[str, Any]:
        profile = await trackway.customer_by_uuid(found, uuid)
        page = await trackway.customer_events_page(found, uuid, {"limit": events_limit})
        return {"customer": profile, "events": page["events"], "next": page["next"]}

    answer = _customer_read(database_url, account, read, {"limit": "--events"})
    if as_json:
        click.echo(json.dumps(answer))
        return
    c = answer["customer"]
    for label, value in (
        ("uuid", c["uuid"]),
        ("customer_id", c["customer_id"] or "-"),
        ("email", c["email"] or "-"),
        ("created", c["created_at"]),
        ("updated", c["updated_at"]),
        ("last seen", c["last_seen_at"]),
    ):
        click.echo(f"{label + ':':<13}{value}")
    click.echo("\nidentifiers")
    _table([[i["kind"], i["value"], i["first_seen_at"]] for i in c["identifiers"]],
           ["KIND", "VALUE", "FIRST_SEEN"])  # fmt: skip
    if c["attributes"]:
        click.echo("\nattributes")
        _table([[k, json.dumps(v)] for k, v in c["attributes"].items()], ["NAME", "VALUE"])
    if c["subscription_groups"]:
        click.echo("\nsubscriptions")
        _table([[k, "subscribed" if v else "unsubscribed"]
                for k, v in c["subscription_groups"].items()], ["GROUP", "STATE"])  # fmt: skip
    if c["merged_profiles"]:
        click.echo("\nmerged profiles")
        _table([[m["uuid"], m["merged_at"] or "-"] for m in c["merged_profiles"]],
               ["UUID", "MERGED_AT"])  # fmt: skip
    if c["conflicts"]:
        click.echo("\nidentity conflicts")
        _table([[x["at"], f"{x['kind']}={x['value']}", x["customer_uuid"], x["holder_uuid"]]
                for x in c["conflicts"]], ["AT", "IDENTIFIER", "EVENT_ON", "HELD_BY"])  # fmt: skip
    click.echo("\nevents (newest first)")
    _table([[e["timestamp"], e["event"], e["event_uuid"]] for e in answer["events"]],
           ["TIMESTAMP", "EVENT", "EVENT_UUID"])  # fmt: skip


@customers.command("delete")
@click.option("--account", required=True, help="Account name or uuid.")
@click.option("--uuid", "customer_uuid", help="The customer's uuid.")
@click.option("--email", help="The customer's email.")
@click.option("--customer-id", help="The customer's customer_id.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def customers_delete(
    account: str,
    customer_uuid: str | None,
    email: str | None,
    customer_id: str | None,
    database_url: str,
    as_json: bool,
) -> None:
    """Delete one customer with its identifiers and events; daily counts stay."""
    given = [v for v in (customer_uuid, email, customer_id) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --uuid, --email, --customer-id")

    async def delete(store: Store) -> dict[str, Any]:
        found = await store.find_account(account)
        trackway = Trackway(store, Settings(database_url=database_url))
        uuid = customer_uuid
        if uuid is None:
            kind = "email" if email else "customer_id"
            uuid = (await trackway.find_customer(found, {kind: email or customer_id}))["uuid"]
        return await trackway.delete_customer(found, uuid)

    try:
        answer = with_store(database_url, delete)
    except NotFound:
        raise click.ClickException("no such customer") from None
    if as_json:
        click.echo(json.dumps(answer))
    else:
        click.echo(f"deleted customer {answer['uuid']} and {answer['events_deleted']} events")


@main.group()
def events() -> None:
    """List event names; rename, archive and unarchive them."""


@events.command("list")
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
def events_list(account: str, database_url: str, as_json: bool) -> None:
    """The event names of ACCOUNT with their type, display name and archived flag."""

    async def names(store: Store) -> list[dict[str, Any]]:
        return await store.event_names(await store.find_account(account))

    for entry in with_store(database_url, names):
        entry = {k: v for k, v in entry.items() if k != "created_ms"}
        if as_json:
            click.echo(json.dumps(entry))
        else:
            flag = "  (archived)" if entry["archived"] else ""
            click.echo(f"{entry['name']}  {entry['type']}  {entry['display_name']!r}{flag}")


def _update_event_name(database_url: str, account: str, name: str, **change: Any) -> None:
    async def update(store: Store) -> bool:
        return await store.update_event_name(await store.find_account(account), name, **change)

    if not with_store(database_url, update):
        raise click.ClickException(f"account {account!r} has no event named {name!r}")


@events.command("rename")
@click.argument("name")
@click.option("--display-name", required=True)
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
def events_rename(name: str, display_name: str, account: str, database_url: str) -> None:
    """Give event NAME a display name (summary.json shows it)."""
    _update_event_name(database_url, account, name, display_name=display_name)


@events.command("archive")
@click.argument("name")
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
def events_archive(name: str, account: str, database_url: str) -> None:
    """Archive event NAME: summary.json counts it under `archives`."""
    _update_event_name(database_url, account, name, archived=True)


@events.command("unarchive")
@click.argument("name")
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
def events_unarchive(name: str, account: str, database_url: str) -> None:
    """Bring event NAME back from the archive."""
    _update_event_name(database_url, account, name, archived=False)


@main.group()
def attributes() -> None:
    """List the attribute types fixed by first use; reset one."""


@attributes.command("list")
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
def attributes_list(account: str, database_url: str, as_json: bool) -> None:
    """The custom attribute names of ACCOUNT with the type the first event that carried each
    fixed (string, timestamp, number, boolean, object, array) and when (GET /api/v1/attributes)."""
    from trackway.service import attribute_document

    async def fixed(store: Store) -> list[Any]:
        return await store.attribute_types(await store.find_account(account))

    for attribute in with_store(database_url, fixed):
        doc = attribute_document(attribute)
        if as_json:
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            click.echo(f"{doc['name']}  {doc['type']}  {doc['first_seen_at'] or '-'}")


@attributes.command("reset")
@click.argument("name")
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
def attributes_reset(name: str, account: str, database_url: str) -> None:
    """Forget the type fixed for attribute NAME: the next event that carries it fixes it anew
    (DELETE /api/v1/attributes/NAME). Events stored already keep their values."""

    async def reset(store: Store) -> Any:
        return await store.reset_attribute_type(await store.find_account(account), name)

    forgotten = with_store(database_url, reset)
    if forgotten is None:
        raise click.ClickException(f"account {account!r} has no type fixed for {name!r}")
    click.echo(f"forgot the type {forgotten.type} of {name!r}; the next event fixes it anew")


class _ImportFailed(click.ClickException):
    exit_code = transfer.EXIT_FAILED


@main.command("import")
@click.argument(
    "source", metavar="FILE|-", type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option("--account", required=True, help="Account name or uuid.")
@database_option
@click.option(
    "--batch-size",
    default=transfer.BATCH_EVENTS,
    type=click.IntRange(1, transfer.MAX_BATCH_EVENTS),
    show_default=True,
    help="Events per store call (one group commit).",
)
@click.option("--json", "as_json", is_flag=True, help="Also print the summary as JSON on stdout.")
@max_future_hours_option
@max_event_attributes_option
@max_attribute_names_option
def import_events(
    source: str,
    account: str,
    database_url: str,
    batch_size: int,
    as_json: bool,
    max_future_hours: int,
    max_event_attributes: int,
    max_attribute_names: int,
) -> None:
    """Load events from FILE (NDJSON: one event a line, in the body format of POST
    /api/v1/event; gunzipped when it ends in .gz) or from stdin (-) into ACCOUNT, under the
    API's rules: validation, identity resolution, one event per event_uuid, rollups.

    \b
    A line without an event_uuid gets one derived from the account and the line itself (and,
    for a line identical to an earlier one, its number of occurrence: two identical lines are
    two events), so running the same file again stores nothing twice (resume an interrupted
    import that way). The summary counts the repeated lines.
    Timestamps are kept as given; one more than --max-future-hours after the import is refused
    (0: none is).
    Rejected lines go to FILE.rejected.ndjson (stdin: ./import-rejected-<time>.ndjson), one
    JSON object each: line, error_type, errors, raw. A summary goes to stderr.

    \b
    Exit status: 0 every line accepted or a duplicate; 1 some lines rejected;
                 2 usage error; 3 the database failed (re-run to resume).
    """
    existing_database(database_url)
    try:
        code = transfer.run_import(
            source,
            account,
            database_url,
            batch_size,
            as_json,
            max_ahead_ms(max_future_hours),
            max_event_attributes,
            max_attribute_names,
        )
    except transfer.UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except StoreUnavailable as exc:
        raise _ImportFailed(
            f"{exc}; re-run to resume (what was stored is not stored twice)"
        ) from None
    sys.exit(code)


@main.command("export")
@click.option("--account", required=True, help="Account name or uuid.")
@click.option("--since", help="From this time on (ISO 8601, or a day YYYY-MM-DD), inclusive.")
@click.option("--until", help="Before this time (ISO 8601, or a day YYYY-MM-DD), exclusive.")
@click.option("--event", "event_name", help="Only events of this name.")
@database_option
def export_events(
    account: str, since: str | None, until: str | None, event_name: str | None, database_url: str
) -> None:
    """Write the events of ACCOUNT to stdout as NDJSON, oldest first: each as stored (the body
    as sent, with its event_uuid and timestamp), the format `trackway import` reads back."""
    existing_database(database_url)
    try:
        transfer.run_export(account, database_url, since, until, event_name, sys.stdout.buffer)
    except transfer.UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except StoreUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@main.group("errors")
def errors_group() -> None:
    """The error log: rejected events with their messages and payloads; list, download,
    replay through today's rules."""


def error_log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    from trackway.domain.events import ERROR_TYPES

    for option in reversed(
        (
            click.option("--account", required=True, help="Account name or uuid."),
            click.option(
                "--type", "error_type", type=click.Choice(ERROR_TYPES), help="Only this type."
            ),
            click.option("--day", help="Only errors received on this UTC day (YYYY-MM-DD)."),
            database_option,
        )
    ):
        command = option(command)
    return command


def _error_filter(error_type: str | None, day: str | None, status: str = "all") -> Any:
    from trackway.domain.errors import InvalidRequest
    from trackway.errors_log import error_filter

    try:
        return error_filter({"type": error_type, "day": day, "status": status})
    except InvalidRequest as exc:
        message = "; ".join(f"--{k}: {', '.join(v)}" for k, v in exc.errors.items())
        raise click.UsageError(message) from None


@errors_group.command("list")
@error_log_options
@click.option("--status", type=click.Choice(["pending", "replayed", "all"]), default="all")
@click.option("--limit", default=100, type=click.IntRange(1, 100_000), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
def errors_list(
    account: str,
    error_type: str | None,
    day: str | None,
    database_url: str,
    status: str,
    limit: int,
    as_json: bool,
) -> None:
    """The newest errors of ACCOUNT, newest first."""
    from trackway import errors_log

    where = _error_filter(error_type, day, status)
    rows = with_store(
        database_url, lambda store: errors_log.latest_rows(store, account, where, limit)
    )
    for row in rows:
        if as_json:
            click.echo(json.dumps(errors_log.error_document(row), ensure_ascii=False))
        else:
            click.echo(errors_log.list_line(row))


@errors_group.command("export")
@error_log_options
@click.option("--status", type=click.Choice(["pending", "replayed", "all"]), default="all")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "ndjson"]), default="csv", show_default=True
)
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True), help="File (default: stdout)."
)
def errors_export(
    account: str,
    error_type: str | None,
    day: str | None,
    database_url: str,
    status: str,
    fmt: str,
    output: str | None,
) -> None:
    """Download the error log of ACCOUNT (filtered) as CSV or NDJSON, newest first: the file
    GET /api/v1/errors?format=… gives."""
    import contextlib

    from trackway import errors_log

    where = _error_filter(error_type, day, status)
    existing_database(database_url)  # before --output is opened: nothing made for nothing
    with open(output, "wb") if output else contextlib.nullcontext(sys.stdout.buffer) as out:
        count = with_store(
            database_url, lambda store: errors_log.export_rows(store, account, where, fmt, out)
        )
    if output:
        click.echo(f"wrote {count} errors to {output}", err=True)


@errors_group.command("replay")
@error_log_options
@click.option("--id", "ids", type=int, multiple=True, help="This error (repeat for more).")
@click.option("--all", "replay_all", is_flag=True, help="Every pending error (no filter).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@max_future_hours_option
@max_event_attributes_option
@max_attribute_names_option
def errors_replay(
    account: str,
    error_type: str | None,
    day: str | None,
    database_url: str,
    ids: tuple[int, ...],
    replay_all: bool,
    as_json: bool,
    max_future_hours: int,
    max_event_attributes: int,
    max_attribute_names: int,
) -> None:
    """Resubmit stored payloads of ACCOUNT through today's rules: those that pass are stored as
    events and marked replayed; the others stay, with their new messages. Give --id, or a
    --type and/or --day, or --all."""
    from trackway import errors_log

    if not ids and not error_type and not day and not replay_all:
        raise click.UsageError("give --id, or --type and/or --day, or --all")
    where = None if ids else _error_filter(error_type, day)
    outcome = with_store(
        database_url,
        lambda store: errors_log.replay_rows(
            store,
            account,
            list(ids) or None,
            where,
            max_ahead_ms(max_future_hours),
            max_event_attributes,
        ),
        max_attribute_names=max_attribute_names,
    )
    if as_json:
        click.echo(json.dumps(outcome.document()))
        return
    click.echo(
        f"replayed {len(outcome.replayed)}, still failing {len(outcome.failed)}, "
        f"replayed before {len(outcome.skipped)}, not found {len(outcome.missing)}"
    )
    for error_id, rejected in outcome.failed:
        click.echo(f"  {error_id}: {rejected.error_type} {json.dumps(rejected.errors)}")


if __name__ == "__main__":
    sys.exit(main())
