"""Timestamps as the API speaks them: ISO 8601 in UTC with a `Z`, and epoch milliseconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,  # \d must not match other scripts' digits (fullwidth ones, say)
)
# Epoch seconds accepted as numbers: 1970-01-01 up to the end of year 9999.
_MAX_EPOCH = 253402300799


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """Epoch milliseconds → '2021-06-24T04:53:54.123Z'."""
    global _last
    seconds = ms // 1000
    last = _last
    if last[0] != seconds:
        # Receipt times repeat the same second thousands of times under load: the text of
        # the last one is kept, as one tuple (threads never see half an update).
        last = _last = (seconds, _format_second(seconds))
    return last[1] + _MILLIS[ms - seconds * 1000]


_MILLIS = [f".{n:03d}Z" for n in range(1000)]
_last: tuple[int, str] = (-1, "")


@lru_cache(maxsize=1024)
def _format_second(seconds: int) -> str:
    # Receipt times repeat the same second thousands of times under load.
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


def day_of_ms(ms: int) -> str:
    """The UTC day of an epoch-milliseconds instant, as 'YYYY-MM-DD'."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d")


def parse_timestamp(value: Any) -> tuple[str, int] | None:
    """An ISO 8601 string (0 to 9 fractional digits; Z, an offset, or no zone meaning UTC) or
    epoch seconds as a number → (normalised UTC string, epoch ms); None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not (0 <= value <= _MAX_EPOCH) or value != value:
            return None
        ms = round(value * 1000)
        if isinstance(value, int) or float(value).is_integer():
            dt = datetime.fromtimestamp(int(value), UTC)
            return f"{dt:%Y-%m-%dT%H:%M:%S}Z", ms
        return format_ms(ms), ms
    if not isinstance(value, str):
        return None
    if len(value) == 24:
        canonical = _parse_canonical(value)
        if canonical is not None:
            return value, canonical
    match = _ISO_RE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    try:
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            if offset >= timedelta(hours=24) or int(off_m) >= 60:
                return None
            dt = dt - offset if sign == "+" else dt + offset
    except (ValueError, OverflowError):
        return None
    if dt.year < 1970 or dt.year > 9999:
        return None
    text = f"{dt:%Y-%m-%dT%H:%M:%S}"
    ms = int(dt.timestamp()) * 1000
    if fraction:
        text += "." + fraction
        ms += int(fraction[:3].ljust(3, "0"))
    return text + "Z", ms


def _parse_canonical(value: str) -> int | None:
    """Epoch ms of '2024-03-03T00:00:25.104Z', the form this API writes and most clients send,
    without the general parser; None for anything else (the general parser decides)."""
    if (
        value[23] != "Z"
        or value[19] != "."
        or value[16] != ":"
        or value[13] != ":"
        or not value.isascii()
    ):
        return None
    hour = _hour_ms(value[:13])
    digits = value[14:16] + value[17:19] + value[20:23]
    if hour is None or not digits.isdigit():
        return None
    minute, second = int(digits[:2]), int(digits[2:4])
    if minute > 59 or second > 59:
        return None
    return hour + (minute * 60 + second) * 1000 + int(digits[4:])


@lru_cache(maxsize=4096)
def _hour_ms(prefix: str) -> int | None:
    """'2024-03-03T00' → epoch ms of that hour (UTC), None when it is not one."""
    if prefix[4] != "-" or prefix[7] != "-" or prefix[10] != "T":
        return None
    digits = prefix[:4] + prefix[5:7] + prefix[8:10] + prefix[11:13]
    if not digits.isdigit():
        return None
    try:
        dt = datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:]),
                      tzinfo=UTC)  # fmt: skip
    except ValueError:
        return None
    if dt.year < 1970:
        return None
    return int(dt.timestamp()) * 1000
