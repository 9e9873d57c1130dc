"""The rules of the read endpoints' parameters, and the shape of summary.json."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
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
_EPOCH_DAY = date(1970, 1, 1)
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
BAD_BOUND = "is not a valid ISO 8601 timestamp or day (YYYY-MM-DD)"


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


def parse_summary_bound(raw: Any, field: str, *, end: bool) -> int | None:
    """Epoch ms of a summary bound: an ISO 8601 instant, or a day `YYYY-MM-DD` meaning its first
    millisecond (start) or its last (end), so that a day given as the end is counted whole."""
    if isinstance(raw, str) and _DAY_RE.fullmatch(raw.strip()):
        try:
            day = date.fromisoformat(raw.strip())
        except ValueError:
            day = None
        if day is None or day.year < 1970:
            raise InvalidRequest({field: [BAD_BOUND]})
        first = _day_start_ms(day)
        return first + DAY_MS - 1 if end else first
    try:
        return parse_instant(raw, field)
    except InvalidRequest:
        raise InvalidRequest({field: [BAD_BOUND]}) from None


def summary_range(start_raw: Any, end_raw: Any, now_ms: int) -> tuple[int, int]:
    """[start, end] in epoch ms. By default the last 7 UTC days including today: from the start
    of the day 6 days ago until now, one bucket a day; with one bound only, the 7 days that
    begin (or end) on that bound's day."""
    start = parse_summary_bound(start_raw, "timestamp_start", end=False)
    end = parse_summary_bound(end_raw, "timestamp_end", end=True)
    if start is None:
        end = now_ms if end is None else end
        # Near 1970 this starts before it: still 7 days, the first ones empty.
        start = _day_start_ms_of(end) - (SUMMARY_DEFAULT_DAYS - 1) * DAY_MS
    elif end is None:
        end = min(_day_start_ms_of(start) + SUMMARY_DEFAULT_DAYS * DAY_MS - 1, _LATEST)
    if end < start:
        raise InvalidRequest({"timestamp_end": ["must not be before timestamp_start"]})
    if end - start > SUMMARY_MAX_DAYS * DAY_MS:
        raise InvalidRequest(
            {"timestamp_end": [f"must be at most {SUMMARY_MAX_DAYS} days after timestamp_start"]}
        )
    return start, end


def check_summary_bounds(params: dict[str, Any]) -> None:
    """Each bound valid on its own (the query parameters under a POST body that overrides
    them: every parameter given is checked where it is given)."""
    parse_summary_bound(params.get("timestamp_start"), "timestamp_start", end=False)
    parse_summary_bound(params.get("timestamp_end"), "timestamp_end", end=True)


def check_history_parameters(params: dict[str, Any]) -> None:
    """event_name and limit valid when given (the query under a POST body, likewise)."""
    name = params.get("event_name")
    if name is not None and name != "":
        history_name(name)
    parse_limit(params.get("limit"), default=HISTORY_MAX, maximum=HISTORY_MAX)


def _day_start_ms(day: date) -> int:
    return (day - _EPOCH_DAY).days * DAY_MS


def _day_start_ms_of(ms: int) -> int:
    return ms - ms % DAY_MS


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
