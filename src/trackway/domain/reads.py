"""The rules of the read endpoints' parameters, and the shape of summary.json."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from trackway.domain.errors import InvalidRequest
from trackway.domain.events import ERROR_TYPES, is_valid_event_name
from trackway.domain.timestamps import format_ms, parse_timestamp

DAY_MS = 86_400_000
SUMMARY_DEFAULT_DAYS = 7
SUMMARY_MAX_DAYS = 366
HISTORY_MAX = 50
TIMELINE_DEFAULT = 1000
TIMELINE_MAX = 10_000
# Epoch ms bounds for an open timeline range.
_EARLIEST, _LATEST = 0, 253402300799999


def parse_limit(raw: Any, *, default: int, maximum: int, field: str = "limit") -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if not isinstance(raw, bool | float) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not 1 <= value <= maximum:
        raise InvalidRequest({field: [f"must be between 1 and {maximum}"]})
    return value


def parse_instant(raw: Any, field: str) -> int | None:
    """Epoch ms of an ISO 8601 parameter; None when absent."""
    if raw is None or raw == "":
        return None
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise InvalidRequest({field: ["is not a valid ISO 8601 timestamp"]})
    return parsed[1]


def timeline_range(start_raw: Any, end_raw: Any) -> tuple[int, int]:
    start = parse_instant(start_raw, "timestamp_start")
    end = parse_instant(end_raw, "timestamp_end")
    start = _EARLIEST if start is None else start
    end = _LATEST if end is None else end
    if end < start:
        raise InvalidRequest({"timestamp_end": ["must not be before timestamp_start"]})
    return start, end


def summary_range(start_raw: Any, end_raw: Any, now_ms: int) -> tuple[int, int]:
    """[start, end] in epoch ms: the last 7 days ending now by default."""
    start = parse_instant(start_raw, "timestamp_start")
    end = parse_instant(end_raw, "timestamp_end")
    if end is None:
        end = now_ms if start is None else min(start + SUMMARY_DEFAULT_DAYS * DAY_MS, _LATEST)
    if start is None:
        start = end - SUMMARY_DEFAULT_DAYS * DAY_MS
    if end < start:
        raise InvalidRequest({"timestamp_end": ["must not be before timestamp_start"]})
    if end - start > SUMMARY_MAX_DAYS * DAY_MS:
        raise InvalidRequest(
            {"timestamp_end": [f"must be at most {SUMMARY_MAX_DAYS} days after timestamp_start"]}
        )
    return start, end


def history_name(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidRequest({"event_name": ["can't be blank"]})
    if not is_valid_event_name(raw):
        raise InvalidRequest({"event_name": ["is not valid"]}, status=422)
    return str(raw)


def days_of(start_ms: int, end_ms: int) -> list[datetime]:
    """Every UTC day from the start's day to the end's day, inclusive."""
    first = datetime.fromtimestamp(start_ms // 1000, UTC).replace(hour=0, minute=0, second=0)
    last = datetime.fromtimestamp(end_ms // 1000, UTC)
    days = [first]
    # Never a day past `last`: the day after 9999-12-31 does not exist.
    while days[-1].date() < last.date():
        days.append(days[-1] + timedelta(days=1))
    return days


def summary_document(
    start_ms: int,
    end_ms: int,
    event_counts: list[tuple[str, str, int]],
    error_counts: list[tuple[str, str, int]],
    names: list[dict[str, Any]],
) -> dict[str, Any]:
    """summary.json from the daily rollups: (day, name, count), (day, error type, count) and
    the event-name registry."""
    days = days_of(start_ms, end_ms)
    position = {day.strftime("%Y-%m-%d"): i for i, day in enumerate(days)}
    registry = {entry["name"]: entry for entry in names}
    events: dict[str, list[int]] = {}
    archives: dict[str, list[int]] = {}
    totals: dict[str, int] = {}
    for day, name, count in event_counts:
        if day not in position:
            continue
        archived = registry.get(name, {}).get("archived", False)
        series = (archives if archived else events).setdefault(name, [0] * len(days))
        series[position[day]] += count
        totals[name] = totals.get(name, 0) + count
    errors = {error_type: [0] * len(days) for error_type in ERROR_TYPES}
    for day, error_type, count in error_counts:
        if day in position:
            errors.setdefault(error_type, [0] * len(days))[position[day]] += count
    stats = {
        name: {
            "archived": entry["archived"],
            "count": totals.get(name, 0),
            "display_name": entry["display_name"],
            "type": entry["type"],
        }
        for name, entry in sorted(registry.items())
    }
    return {
        "events_chart_stats": [
            {
                "archives": dict(sorted(archives.items())),
                "error": errors,
                "events": dict(sorted(events.items())),
                "timelapse": [day.strftime("%m/%d") for day in days],
            }
        ],
        "stats": stats,
        "status": "ok",
        "timestamp_end": format_ms(end_ms),
        "timestamp_start": format_ms(start_ms),
    }
