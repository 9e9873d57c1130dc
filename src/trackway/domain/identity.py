"""Which customer an event belongs to: identifier resolution and the merge rules.

A store loads, for a batch of events, every identifier they carry and the profiles those point
at; `IdentityResolver` then resolves the events one by one in memory (so a batch touches each
identifier once) and records what must be written: new profiles, changed profiles, new
identifiers, merges and conflicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from trackway.domain.customers import ACTIVITY_RESOLUTION_MS
from trackway.domain.events import AcceptedEvent

# Strongest first: when identifiers disagree, the stronger one decides.
IDENTIFIER_KINDS: tuple[str, ...] = ("customer_id", "email", "email_hash", "device_id", "cookie")
_RANK = {kind: rank for rank, kind in enumerate(IDENTIFIER_KINDS)}

# Body fields that describe the event or identify the customer, not the profile.
_NOT_PROFILE_ATTRIBUTES = frozenset(
    {
        "event",
        "event_uuid",
        "timestamp",
        "customer_id",
        "retailer_customer_id",
        "email",
        "email_hash",
        "device_id",
        "cookie",
        "subscription_groups",
        "verification_key",
        "event_signature",
        "sent_at",
        # The request's context: where the event came from, not who the customer is.
        "user_agent",
        "ip",
        "url",
        "referrer",
        "site",
        "session_uuid",
    }
)


def email_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode("utf-8", "surrogatepass")).hexdigest()


def identifiers_of(event: AcceptedEvent) -> list[tuple[str, str]]:
    """(kind, value) of every identifier the event carries, strongest first."""
    found: list[tuple[str, str]] = []
    if event.customer_id is not None:
        found.append(("customer_id", event.customer_id))
    if event.email is not None:
        found.append(("email", event.email))
        found.append(("email_hash", email_hash(event.email)))
    if event.email_hash is not None and (
        not found or found[-1] != ("email_hash", event.email_hash)
    ):
        found.append(("email_hash", event.email_hash))
    if event.device_id is not None:
        found.append(("device_id", event.device_id))
    if event.cookie is not None:
        found.append(("cookie", event.cookie))
    return found


@dataclass(slots=True)
class Profile:
    uuid: str
    customer_id: str | None
    email: str | None
    attributes: dict[str, Any]
    subscriptions: dict[str, bool]
    created_ms: int
    updated_ms: int
    # The newest timestamp of its events (to ACTIVITY_RESOLUTION_MS unless written anyway).
    seen_ms: int = 0
    is_new: bool = False
    changed: bool = False
    # Only its last activity moved: written, but not an update of the profile (updated_ms).
    seen_moved: bool = False


@dataclass(slots=True)
class Merge:
    loser: str
    winner: str
    # When: the receipt time of the event that tied the two profiles.
    received_ms: int = 0


@dataclass(slots=True)
class Conflict:
    event_uuid: str
    customer_uuid: str
    other_uuid: str
    kind: str
    value: str
    received_ms: int


@dataclass(slots=True)
class IdentityResolver:
    """Resolves events against `index` ((kind, value) → profile uuid) and `profiles`."""

    index: dict[tuple[str, str], str]
    profiles: dict[str, Profile]
    new_uuid: Callable[[], str]
    new_identifiers: list[tuple[str, str, str, int]] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    # Merged-away uuid → the uuid that took it over, for events resolved earlier in the batch.
    redirect: dict[str, str] = field(default_factory=dict)
    # Profile uuid → its keys in `index`, and the positions of its `new_identifiers`: a merge
    # repoints what the loser held without scanning everything (batches hold 10^5 identifiers).
    # Built at the batch's first merge (most batches have none), kept up to date after it.
    _held: dict[str, list[tuple[str, str]]] | None = field(default=None, init=False)
    _new_at: dict[str, list[int]] = field(default_factory=dict, init=False)

    def _holdings(self) -> dict[str, list[tuple[str, str]]]:
        if self._held is None:
            self._held = {}
            for key, uuid in self.index.items():
                self._held.setdefault(uuid, []).append(key)
            for i, (_, _, uuid, _) in enumerate(self.new_identifiers):
                self._new_at.setdefault(uuid, []).append(i)
        return self._held

    def final(self, uuid: str) -> str:
        while uuid in self.redirect:
            uuid = self.redirect[uuid]
        return uuid

    def resolve(self, event: AcceptedEvent) -> str:
        """The uuid of the event's customer, creating or merging profiles as the rules say."""
        ids = identifiers_of(event)
        owner = self.index.get(ids[0]) if len(ids) == 1 else None
        if owner is None:
            owner = self._resolve_identifiers(event, ids)
        # Else the common case: one identifier, known: its profile, nothing to merge or attach.
        profile = self.profiles[owner]
        if event.customer_id is not None and profile.customer_id is None:
            profile.customer_id = event.customer_id
            profile.changed = True
        if event.event == "identify":
            attributes = profile_attributes(event.body)
            if attributes:
                profile.attributes.update(attributes)
                profile.changed = True
        groups = event.body.get("subscription_groups")
        if groups:
            for group in groups:
                profile.subscriptions[group["id"]] = group["subscribed"]
            profile.changed = True
        if profile.changed:
            profile.updated_ms = max(profile.updated_ms, event.received_ms)
        if event.timestamp_ms > profile.seen_ms and (
            profile.is_new
            or profile.changed
            or profile.seen_moved
            or event.timestamp_ms > profile.seen_ms + ACTIVITY_RESOLUTION_MS
        ):
            profile.seen_ms = event.timestamp_ms
            profile.seen_moved = True
        return owner

    def _resolve_identifiers(self, event: AcceptedEvent, ids: list[tuple[str, str]]) -> str:
        """The owner among the profiles the identifiers point at (or a new one), after the
        merges and conflicts they make; the identifiers and the email it takes."""
        # Profiles the event's identifiers point at, each with the strongest kind that found it.
        found: dict[str, str] = {}
        for kind, value in ids:
            uuid = self.index.get((kind, value))
            if uuid is not None and uuid not in found:
                found[uuid] = kind

        owner = self._owner(event, found)
        profile = self.profiles[owner]
        for other, kind in found.items():
            if other == owner:
                continue
            other_profile = self.profiles[other]
            if (
                other_profile.customer_id is not None
                and (profile.customer_id is not None or event.customer_id is not None)
                and other_profile.customer_id != (profile.customer_id or event.customer_id)
            ):
                # Two identified customers: never merged; the identifier stays where it is.
                value = next(v for k, v in ids if k == kind)
                self.conflicts.append(
                    Conflict(event.event_uuid, owner, other, kind, value, event.received_ms)
                )
                continue
            self._merge(other_profile, profile, event.received_ms)

        for kind, value in ids:
            if (kind, value) not in self.index:
                self.index[(kind, value)] = owner
                if self._held is not None:
                    self._held.setdefault(owner, []).append((kind, value))
                    self._new_at.setdefault(owner, []).append(len(self.new_identifiers))
                self.new_identifiers.append((kind, value, owner, event.received_ms))
        # The profile's email: the first one seen, then the newest an identify carries (the
        # others keep finding it). An email another customer holds (a conflict above) stays
        # that customer's.
        if (
            event.email is not None
            and event.email != profile.email
            and (profile.email is None or event.event == "identify")
            and self.index.get(("email", event.email)) == owner
        ):
            profile.email = event.email
            profile.changed = True
        return owner

    def _owner(self, event: AcceptedEvent, found: dict[str, str]) -> str:
        if event.customer_id is not None:
            uuid = self.index.get(("customer_id", event.customer_id))
            if uuid is not None:
                return uuid
            # A new customer_id: it may take over an anonymous profile, never an identified one.
            anonymous = [u for u in found if self.profiles[u].customer_id is None]
            if anonymous:
                return min(anonymous, key=lambda u: _RANK[found[u]])
            return self._create(event)
        identified = [u for u in found if self.profiles[u].customer_id is not None]
        candidates = identified or list(found)
        if not candidates:
            return self._create(event)
        return min(candidates, key=lambda u: _RANK[found[u]])

    def _create(self, event: AcceptedEvent) -> str:
        uuid = self.new_uuid()
        self.profiles[uuid] = Profile(
            uuid=uuid,
            customer_id=None,
            email=None,
            attributes={},
            subscriptions={},
            created_ms=event.received_ms,
            updated_ms=event.received_ms,
            seen_ms=event.timestamp_ms,
            is_new=True,
        )
        return uuid

    def _merge(self, loser: Profile, winner: Profile, at_ms: int) -> None:
        """Fold an anonymous (or same-customer) profile into the winner; the winner's values
        win, the loser's fill what the winner lacks."""
        for key, value in loser.attributes.items():
            winner.attributes.setdefault(key, value)
        for key, value in loser.subscriptions.items():
            winner.subscriptions.setdefault(key, value)
        if winner.customer_id is None and loser.customer_id is not None:
            winner.customer_id = loser.customer_id
        if winner.email is None:
            winner.email = loser.email
        winner.created_ms = min(winner.created_ms, loser.created_ms)
        winner.seen_ms = max(winner.seen_ms, loser.seen_ms)
        winner.changed = True
        holdings = self._holdings()
        held = holdings.pop(loser.uuid, [])
        for pair in held:
            self.index[pair] = winner.uuid
        holdings.setdefault(winner.uuid, []).extend(held)
        positions = self._new_at.pop(loser.uuid, [])
        for i in positions:
            k, v, _, ms = self.new_identifiers[i]
            self.new_identifiers[i] = (k, v, winner.uuid, ms)
        self._new_at.setdefault(winner.uuid, []).extend(positions)
        del self.profiles[loser.uuid]
        self.redirect[loser.uuid] = winner.uuid
        if loser.is_new:
            # Never written: nothing to repoint in the store.
            return
        self.merges.append(Merge(loser.uuid, winner.uuid, at_ms))


def profile_attributes(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _NOT_PROFILE_ATTRIBUTES}


def all_identifiers(events: Iterable[AcceptedEvent]) -> set[tuple[str, str]]:
    return {pair for event in events for pair in identifiers_of(event)}
