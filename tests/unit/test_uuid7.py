"""The event uuids validation makes: version 7, unique, ordered, and not repeated by a fork."""

from __future__ import annotations

import os
import time
import uuid

from trackway.domain.events import Uuid7


def test_version_7_rfc_variant_and_the_time_in_front() -> None:
    make = Uuid7()

    before = time.time_ns() // 1_000_000
    value = uuid.UUID(make())
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_unique_and_ordered_even_beyond_4096_a_millisecond() -> None:
    make = Uuid7()
    made = [make() for _ in range(50_000)]
    assert len(set(made)) == len(made)
    # Within one generator, later is greater: the counter, then a borrowed millisecond.
    assert made == sorted(made)
    for text in made[::997]:
        assert str(uuid.UUID(text)) == text


def test_a_forked_child_does_not_repeat_its_parent() -> None:
    make = Uuid7()
    make()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next uuids, to the parent
        os.close(read)
        os.write(write, "\n".join(make() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    parent = {make() for _ in range(100)}
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    child = set(b"".join(chunks).decode().split("\n"))
    assert len(child) == 100
    assert not parent & child
    # Not the same random bits either: they would collide in the next millisecond.
    assert {u[19:] for u in parent}.isdisjoint({u[19:] for u in child})
