"""What API workers and the writer process say to each other over the writer's Unix socket.

A frame is a 4-byte little-endian length and a msgpack value (msgspec). An API worker sends
jobs, the writer answers each one after COMMIT, in any order, under the job's id:

    job:    [id, account id, [event, ...], [rejection, ...]]
    answer: [id, status, stored, duplicates, [[index, error type, errors], ...], message,
             group events, group seconds]

An event travels as an array (WireEvent), with its stored body already encoded as JSON by the
worker (the writer writes those bytes as they are); the body is parsed again only when the
writer needs it, for an identify event or one with subscription groups (the profile takes
them): it decodes the JSON then (msgpack has no integers beyond 64 bits, JSON bodies may).
The custom attributes come typed by the worker too (`attribute_types`). The first job of each
group commit carries the group's size and duration, so that exactly one worker counts the
commit in its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from trackway.domain.batch import attribute_types_of
from trackway.domain.errors import EventRejected
from trackway.domain.events import AcceptedEvent
from trackway.store.base import IngestResult, Rejection

HEADER = 4
# A frame larger than this is a broken peer: bulk calls are capped far below it.
MAX_FRAME_BYTES = 512 * 1024 * 1024

STATUS_OK = 0
# The store cannot write now (disk full, read-only, locked): the API answers 503.
STATUS_UNAVAILABLE = 1
# The job itself failed (alone, after its group failed): the API answers 500.
STATUS_FAILED = 2


class WireEvent(AcceptedEvent, array_like=True):
    """An accepted event as it travels: an array of AcceptedEvent's fields, so that the writer
    takes it as it is decoded. Its `stored` body is always there, its `body` is empty (the
    writer decodes `stored` into it when `parse` says it reads it)."""

    # Whether the writer must read the body.
    parse: bool = False


class WireJob(msgspec.Struct, array_like=True):
    id: int
    account_id: int
    events: list[WireEvent]
    # As the store takes them (a dataclass msgspec encodes field by field): rare, so no
    # compact copy of their fields to keep in step.
    rejections: list[Rejection]


class WireAnswer(msgspec.Struct, array_like=True):
    id: int
    status: int
    stored: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, dict[str, list[str]]]] = []
    message: str = ""
    group_events: int = 0
    group_seconds: float = 0.0


_json = msgspec.json.Encoder()
_encoder = msgspec.msgpack.Encoder()
_json_decode = msgspec.json.Decoder().decode
job_decoder = msgspec.msgpack.Decoder(WireJob)
answer_decoder = msgspec.msgpack.Decoder(WireAnswer)


def frame(value: Any) -> bytes:
    payload = _encoder.encode(value)
    return len(payload).to_bytes(HEADER, "little") + payload


def needs_body(event: AcceptedEvent) -> bool:
    return event.event == "identify" or "subscription_groups" in event.body


def job_frame(
    job_id: int,
    account_id: int,
    events: Sequence[AcceptedEvent],
    rejections: Sequence[Rejection],
) -> bytes:
    """A job as a frame; the per-event work that needs no database (typing each custom
    attribute, encoding the stored body) is done here, in the API worker."""
    wire = [_wire_event(e) for e in events]
    return frame(WireJob(job_id, account_id, wire, list(rejections)))


def accepted_events(job: WireJob) -> Sequence[AcceptedEvent]:
    """The writer's side: the events of a job, as the group commit takes them (each one an
    AcceptedEvent already: only the bodies the writer reads are decoded)."""
    for e in job.events:
        if e.parse and e.stored is not None:
            e.body = _json_decode(e.stored)
    return job.events


_NO_BODY: dict[str, Any] = {}


def _wire_event(e: AcceptedEvent) -> WireEvent:
    return WireEvent(e.event_uuid, e.event, e.timestamp, e.timestamp_ms, e.received_ms,
                     e.customer_id, e.email, e.email_hash, e.device_id, e.cookie, _NO_BODY,
                     attribute_types_of(e), _json.encode(e.body), e.fresh_uuid,
                     needs_body(e))  # fmt: skip


def ok_answer(job_id: int, result: IngestResult, group: tuple[int, float] | None) -> WireAnswer:
    events, seconds = group or (0, 0.0)
    return WireAnswer(
        job_id,
        STATUS_OK,
        result.stored,
        result.duplicates,
        [(i, r.error_type, r.errors) for i, r in result.rejected],
        "",
        events,
        seconds,
    )


def result_of(answer: WireAnswer) -> IngestResult:
    if not answer.rejected:  # almost always: no comprehension (a function call in 3.11)
        return IngestResult(answer.stored, answer.duplicates, [])
    return IngestResult(
        answer.stored,
        answer.duplicates,
        [(i, EventRejected(t, errors)) for i, t, errors in answer.rejected],
    )


class FrameReader:
    """Frames out of a byte stream, as much of it as has arrived."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= HEADER:
            size = int.from_bytes(buffer[start : start + HEADER], "little")
            if size > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {size} bytes")
            if end - start - HEADER < size:
                break
            frames.append(bytes(buffer[start + HEADER : start + HEADER + size]))
            start += HEADER + size
        if start:
            del buffer[:start]
        return frames
