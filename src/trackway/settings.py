"""Configuration: read once (CLI flags, then TRACKWAY_* variables, then defaults), passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///./trackway-data/trackway.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # Largest request body accepted, in bytes; larger ones get 413 without being read.
    max_body_bytes: int = 1024 * 1024
    log_level: str = "info"
    # Events a second per account (0: no limit), split evenly over the worker processes.
    ingest_rate_limit: int = 0
    # "text" or "json" (one JSON object a line).
    log_format: str = "text"
    # One log line per request (method, path, status, duration, request id).
    access_log: bool = False
    # Events one POST /api/v1/bulkevents may carry; more is answered 413.
    max_bulk_events: int = 100
    # Calls of GET /api/v1/customer_search/show_events per account and hour (the seed's 10).
    show_events_per_hour: int = 10
    # Seconds a client may pause while sending a request body; then 408 and the connection closes.
    body_timeout: int = 30
    # Seconds a connection may take to send complete request headers; then it is closed.
    header_timeout: int = 10
    # Seconds an idle keep-alive connection stays open between requests.
    keep_alive_timeout: int = 5
    # Concurrent connections per worker process (kept below its file-descriptor limit).
    max_connections: int = 1000
    # Comma-separated addresses (or *) of reverse proxies whose X-Forwarded-For and
    # X-Forwarded-Proto are trusted; empty: none, the connection's own address is the client's.
    forwarded_allow_ips: str = ""
    # Page origins (comma-separated, or *) whose scripts may call the ingest paths (CORS).
    cors_origins: str = "*"

    # Hours after its receipt an event's timestamp may be (after clock-skew correction); later
    # ones are refused. 0: no bound.
    max_future_hours: int = 24
    # Top-level fields one event may carry (the known ones included); more is a 400.
    max_event_attributes: int = 1000
    # Custom attribute names one account may fix; an event bringing more is a 400.
    max_attribute_names: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by TRACKWAY_<FIELD> variables, overridden by non-None overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(env_name(field.name))
            if raw is not None and raw != "":
                values[field.name] = _coerce(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.body_timeout < 1:
            raise ValueError("body_timeout must be at least 1 second")
        if self.header_timeout < 1:
            raise ValueError("header_timeout must be at least 1 second")
        if self.keep_alive_timeout < 1:
            raise ValueError("keep_alive_timeout must be at least 1 second")
        if self.max_connections < 16:
            raise ValueError("max_connections must be at least 16")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not (0 < self.port < 65536):
            raise ValueError("port must be between 1 and 65535")
        if self.max_event_attributes < 1:
            raise ValueError("max_event_attributes must be at least 1")
        if self.max_attribute_names < 1:
            raise ValueError("max_attribute_names must be at least 1")
        if self.max_future_hours < 0:
            raise ValueError("max_future_hours must be 0 (no bound) or more")

    @property
    def max_ahead_ms(self) -> int | None:
        """The future bound of timestamps in milliseconds, None when there is none."""
        return max_ahead_ms(self.max_future_hours)

    def to_env(self) -> dict[str, str]:
        """The variables that make from_env() in another process return these settings."""
        return {env_name(f.name): str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def max_ahead_ms(max_future_hours: int) -> int | None:
    return max_future_hours * 3_600_000 if max_future_hours > 0 else None


def env_name(field_name: str) -> str:
    return "TRACKWAY_" + field_name.upper()


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    if type_name in ("bool", bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if type_name in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{env_name(name)} must be an integer, got {raw!r}") from None
    return raw
