"""One group commit, planned without I/O: what a backend must look up, and what it must write.

A backend's writer gathers the events of many requests. Per account it asks `lookups_needed`
what to read, reads it (inside its write transaction, so nothing changes meanwhile), and hands
the answers to `plan_account`, which decides duplicates, attribute-type rejections and every
event's customer. The backend then writes the plan. Both backends share this logic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trackway.domain.errors import EventRejected
from trackway.domain.events import (
    AcceptedEvent,
    custom_attribute_types,
    too_many_attribute_names,
    type_mismatch,
)
from trackway.domain.identity import IdentityResolver, Merge, Profile, identifiers_of

log = logging.getLogger("trackway.identity")

# (index of the job in the batch, index of the event in its job, the event)
Entry = tuple[int, int, AcceptedEvent]


@dataclass(frozen=True, slots=True)
class LookupsNeeded:
    event_uuids: list[str]
    attribute_names: list[str]
    identifiers: list[tuple[str, str]]


@dataclass(slots=True)
class Lookups:
    """What the store holds for one account, as far as the batch needs it."""

    existing_uuids: set[str]
    attribute_types: dict[str, str]
    identifiers: dict[tuple[str, str], str]
    profiles: dict[str, Profile]
    # How many attribute names the account has fixed; counted only when the batch brings new
    # ones (names_to_count), None otherwise.
    attribute_name_count: int | None = None


# Attribute names an account may fix at most (a setting: --max-attribute-names).
MAX_ATTRIBUTE_NAMES = 10_000


def names_to_count(needed: LookupsNeeded, fixed: dict[str, str]) -> bool:
    """Whether the batch brings attribute names the account has not fixed yet, so that the
    store must count the names it has (the steady state, only known names, counts nothing)."""
    return len(fixed) < len(needed.attribute_names)


@dataclass(slots=True)
class AccountPlan:
    account_id: int
    # (event, its customer's uuid) to insert.
    stored: list[tuple[AcceptedEvent, str]] = field(default_factory=list)
    # Entries seen before (in the store, or earlier in this batch).
    duplicates: list[Entry] = field(default_factory=list)
    # Events refused for an attribute type, with why.
    rejected: list[tuple[Entry, EventRejected]] = field(default_factory=list)
    new_attribute_types: list[tuple[str, str]] = field(default_factory=list)
    identity: IdentityResolver | None = None


@dataclass(slots=True)
class IdentityWrites:
    """The rows resolving a plan's events changed, in the order a store writes them:
    new profiles, merges, changed profiles, new identifiers, conflicts."""

    # account, uuid, customer_id, email, attrs, subs, created, updated, seen ms
    new_profiles: list[tuple[Any, ...]]
    merges: list[Merge]
    # customer_id, email, attrs, subs, created, updated, seen ms, account, uuid
    changed_profiles: list[tuple[Any, ...]]
    identifiers: list[tuple[Any, ...]]  # account, kind, value, customer uuid, created ms
    conflicts: list[
        tuple[Any, ...]
    ]  # account, ms, event uuid, customer uuid, other uuid, kind, value


def identity_writes(plan: AccountPlan, json_value: Callable[[Any], Any]) -> IdentityWrites:
    """`json_value` turns a profile's attributes or subscriptions into what the store's JSON
    column takes."""
    resolver = plan.identity
    writes = IdentityWrites([], [], [], [], [])
    if resolver is None:
        return writes
    account = plan.account_id
    for p in resolver.profiles.values():
        values = (p.customer_id, p.email, json_value(p.attributes), json_value(p.subscriptions),
                  p.created_ms, p.updated_ms, p.seen_ms)  # fmt: skip
        if p.is_new:
            writes.new_profiles.append((account, p.uuid, *values))
        elif p.changed or p.seen_moved:
            writes.changed_profiles.append((*values, account, p.uuid))
    writes.merges = list(resolver.merges)
    writes.identifiers = [(account, k, v, u, ms) for k, v, u, ms in resolver.new_identifiers]
    for c in resolver.conflicts:
        log.warning("identity conflict on %s %r: event %s kept on %s, not merged with %s",
                    c.kind, c.value, c.event_uuid, c.customer_uuid, c.other_uuid)  # fmt: skip
        writes.conflicts.append(
            (account, c.received_ms, c.event_uuid, c.customer_uuid, c.other_uuid, c.kind, c.value)
        )
    return writes


def attribute_types_of(event: AcceptedEvent) -> list[tuple[str, str]]:
    """(name, type) of the event's custom attributes: as validation typed them, or now."""
    if event.attribute_types is not None:
        return event.attribute_types
    return custom_attribute_types(event.body)


def lookups_needed(events: Sequence[AcceptedEvent]) -> LookupsNeeded:
    # (name, type) pairs first: events of one name bring the same ones, one set update each.
    typed: set[tuple[str, str]] = set()
    pairs: set[tuple[str, str]] = set()
    for event in events:
        typed.update(attribute_types_of(event))
        pairs.update(identifiers_of(event))
    return LookupsNeeded(
        # A uuid made at validation is new: only the ones clients sent are looked up.
        event_uuids=sorted({e.event_uuid for e in events if not e.fresh_uuid}),
        attribute_names=sorted({name for name, _ in typed}),
        identifiers=sorted(pairs),
    )


def plan_account(
    account_id: int,
    entries: Sequence[Entry],
    lookups: Lookups,
    new_uuid: Callable[[], str],
    max_attribute_names: int = MAX_ATTRIBUTE_NAMES,
) -> AccountPlan:
    plan = AccountPlan(account_id)
    seen = set(lookups.existing_uuids)
    types = dict(lookups.attribute_types)
    # Room for new names: the bound less what the account has (and what the batch adds).
    room = _NameRoom(max_attribute_names, lookups.attribute_name_count or 0)
    accepted: list[AcceptedEvent] = []
    for entry in entries:
        event = entry[2]
        if event.event_uuid in seen:
            plan.duplicates.append(entry)
            continue
        rejection = _check_types(event, types, plan.new_attribute_types, room)
        if rejection is not None:
            plan.rejected.append((entry, rejection))
            continue
        seen.add(event.event_uuid)
        accepted.append(event)

    resolver = IdentityResolver(lookups.identifiers, lookups.profiles, new_uuid)
    owners = [resolver.resolve(event) for event in accepted]
    # Through the merges that later events of the batch made.
    plan.stored = [(e, resolver.final(o)) for e, o in zip(accepted, owners, strict=True)]
    plan.identity = resolver
    return plan


@dataclass(slots=True)
class _NameRoom:
    bound: int
    used: int


def _check_types(
    event: AcceptedEvent, types: dict[str, str], new: list[tuple[str, str]], room: _NameRoom
) -> EventRejected | None:
    pairs = attribute_types_of(event)
    fresh = []
    for name, kind in pairs:
        fixed = types.get(name)
        if fixed is None:
            fresh.append((name, kind))
        elif fixed != kind:
            return type_mismatch(name, fixed, kind)
    if fresh:
        if room.used + len(fresh) > room.bound:
            return too_many_attribute_names(len(fresh), room.used, room.bound)
        room.used += len(fresh)
        for name, kind in fresh:
            types[name] = kind
            new.append((name, kind))
    return None
