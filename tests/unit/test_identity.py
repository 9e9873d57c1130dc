"""IdentityResolver on its own: which profile an event belongs to, what it creates, merges and
records. Pure: events come from the domain's own validation, profiles and the identifier index
are plain dictionaries, uuids come from a counter."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from trackway.domain.events import validate_event
from trackway.domain.identity import (
    Conflict,
    IdentityResolver,
    Profile,
    email_hash,
    identifiers_of,
)

RECEIVED = 1_700_000_000_000


def event(**body: Any):
    body.setdefault("event", "view")
    return validate_event(body, RECEIVED)


def resolver(*profiles: Profile, index: dict[tuple[str, str], str] | None = None):
    counter = itertools.count(1)
    return IdentityResolver(
        index=dict(index or {}),
        profiles={p.uuid: p for p in profiles},
        new_uuid=lambda: f"new-{next(counter)}",
    )


def stored(uuid: str, customer_id: str | None = None, email: str | None = None, **attrs: Any):
    """A profile as the store loads it (already written: not new)."""
    return Profile(
        uuid=uuid,
        customer_id=customer_id,
        email=email,
        attributes=dict(attrs),
        subscriptions={},
        created_ms=RECEIVED - 1000,
        updated_ms=RECEIVED - 1000,
    )


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# -- identifiers ----------------------------------------------------------------------------


def test_email_hash_is_md5_of_the_lower_cased_email():
    assert email_hash("Jane.Doe@Example.COM") == "0cba00ca3da1b283a57287bcceb17e35"
    assert email_hash("jane.doe@example.com") == "0cba00ca3da1b283a57287bcceb17e35"


def test_identifiers_of_an_event_strongest_first():
    e = event(
        customer_id="c-1",
        email="Jane@Example.com",
        device_id="dev-1",
        cookie="ck-1",
    )
    assert identifiers_of(e) == [
        ("customer_id", "c-1"),
        ("email", "jane@example.com"),
        ("email_hash", md5("jane@example.com")),
        ("device_id", "dev-1"),
        ("cookie", "ck-1"),
    ]


def test_retailer_customer_id_is_the_customer_id():
    assert identifiers_of(event(retailer_customer_id="r-9")) == [("customer_id", "r-9")]


def test_email_hash_sent_alone_is_an_identifier_in_lower_case():
    digest = md5("jane@example.com")
    assert identifiers_of(event(email_hash=digest.upper())) == [("email_hash", digest)]


def test_email_hash_sent_with_its_email_is_listed_once():
    digest = md5("jane@example.com")
    assert identifiers_of(event(email="jane@example.com", email_hash=digest)) == [
        ("email", "jane@example.com"),
        ("email_hash", digest),
    ]


# -- resolution -----------------------------------------------------------------------------


def test_no_identifier_known_creates_a_new_profile_with_every_identifier():
    r = resolver()
    owner = r.resolve(event(customer_id="c-1", email="jane@example.com", cookie="ck"))
    assert owner == "new-1"
    profile = r.profiles["new-1"]
    assert profile.is_new
    assert (profile.customer_id, profile.email) == ("c-1", "jane@example.com")
    assert (profile.created_ms, profile.updated_ms) == (RECEIVED, RECEIVED)
    assert r.new_identifiers == [
        ("customer_id", "c-1", "new-1", RECEIVED),
        ("email", "jane@example.com", "new-1", RECEIVED),
        ("email_hash", md5("jane@example.com"), "new-1", RECEIVED),
        ("cookie", "ck", "new-1", RECEIVED),
    ]
    assert r.merges == [] and r.conflicts == []


def test_same_cookie_twice_is_the_same_profile_and_its_identifier_is_added_once():
    r = resolver()
    first = r.resolve(event(cookie="ck"))
    second = r.resolve(event(cookie="ck"))
    assert first == second == "new-1"
    assert list(r.profiles) == ["new-1"]
    assert r.new_identifiers == [("cookie", "ck", "new-1", RECEIVED)]


def test_a_known_identifier_resolves_to_its_stored_profile():
    r = resolver(stored("p-1"), index={("device_id", "dev-1"): "p-1"})
    assert r.resolve(event(device_id="dev-1")) == "p-1"
    assert r.new_identifiers == []
    assert not r.profiles["p-1"].changed


def test_identify_with_a_new_customer_id_takes_over_the_anonymous_cookie_profile():
    r = resolver(stored("anon"), index={("cookie", "ck"): "anon"})
    owner = r.resolve(event(event="identify", cookie="ck", customer_id="c-42"))
    assert owner == "anon"
    assert r.profiles["anon"].customer_id == "c-42"
    assert r.profiles["anon"].changed
    assert r.new_identifiers == [("customer_id", "c-42", "anon", RECEIVED)]
    assert r.merges == []


def test_anonymous_profile_is_merged_into_the_customer_id_profile():
    r = resolver(
        stored("known", customer_id="c-42", plan="gold"),
        stored("anon", plan="free", color="red"),
        index={("customer_id", "c-42"): "known", ("cookie", "ck"): "anon"},
    )
    owner = r.resolve(event(customer_id="c-42", cookie="ck"))
    assert owner == "known"
    assert [(m.loser, m.winner) for m in r.merges] == [("anon", "known")]
    assert r.index[("cookie", "ck")] == "known"
    assert "anon" not in r.profiles
    assert r.final("anon") == "known"
    # The winner's values win, the loser's fill what the winner lacks.
    assert r.profiles["known"].attributes == {"plan": "gold", "color": "red"}
    assert r.conflicts == []


def test_device_id_profile_is_merged_into_the_email_profile():
    r = resolver(
        stored("by-device"),
        stored("by-email", email="jane@example.com"),
        index={
            ("device_id", "dev-1"): "by-device",
            ("email", "jane@example.com"): "by-email",
            ("email_hash", md5("jane@example.com")): "by-email",
        },
    )
    owner = r.resolve(event(device_id="dev-1", email="Jane@Example.com"))
    assert owner == "by-email"
    assert [(m.loser, m.winner) for m in r.merges] == [("by-device", "by-email")]
    assert r.index[("device_id", "dev-1")] == "by-email"


def test_email_beats_cookie_when_a_new_customer_id_takes_over():
    r = resolver(
        stored("by-cookie"),
        stored("by-email", email="jane@example.com"),
        index={("cookie", "ck"): "by-cookie", ("email", "jane@example.com"): "by-email"},
    )
    owner = r.resolve(event(customer_id="c-7", email="jane@example.com", cookie="ck"))
    assert owner == "by-email"
    assert r.profiles["by-email"].customer_id == "c-7"
    assert [(m.loser, m.winner) for m in r.merges] == [("by-cookie", "by-email")]


def test_email_matched_by_email_hash_alone():
    digest = md5("jane@example.com")
    r = resolver(
        stored("p-1", email="jane@example.com"),
        index={("email", "jane@example.com"): "p-1", ("email_hash", digest): "p-1"},
    )
    assert r.resolve(event(email_hash=digest)) == "p-1"
    assert r.new_identifiers == []


def test_two_customer_ids_are_never_merged_and_the_conflict_is_recorded():
    r = resolver(
        stored("one", customer_id="1", email="one@example.com"),
        index={
            ("customer_id", "1"): "one",
            ("email", "one@example.com"): "one",
            ("email_hash", md5("one@example.com")): "one",
        },
    )
    e = event(event="purchase", customer_id="2", email="one@example.com")
    owner = r.resolve(e)
    assert owner == "new-1"
    assert set(r.profiles) == {"one", "new-1"}
    assert r.merges == []
    assert r.conflicts == [
        Conflict(e.event_uuid, "new-1", "one", "email", "one@example.com", RECEIVED)
    ]
    # The email stays with customer 1; customer 2 gets only its own new identifier.
    assert r.index[("email", "one@example.com")] == "one"
    assert r.new_identifiers == [("customer_id", "2", "new-1", RECEIVED)]
    assert r.profiles["one"].email == "one@example.com"
    assert r.profiles["new-1"].customer_id == "2"
    assert r.profiles["new-1"].email is None


def test_identifiers_of_two_identified_customers_without_a_customer_id():
    r = resolver(
        stored("one", customer_id="1", email="one@example.com"),
        stored("two", customer_id="2"),
        index={("email", "one@example.com"): "one", ("device_id", "dev-2"): "two"},
    )
    e = event(email="one@example.com", device_id="dev-2")
    assert r.resolve(e) == "one"
    assert r.merges == []
    assert r.conflicts == [Conflict(e.event_uuid, "one", "two", "device_id", "dev-2", RECEIVED)]
    assert r.index[("device_id", "dev-2")] == "two"


def test_profiles_created_and_merged_in_one_batch_are_not_recorded_as_merges():
    r = resolver()
    by_cookie = r.resolve(event(cookie="ck"))
    by_customer = r.resolve(event(customer_id="c-1"))
    assert (by_cookie, by_customer) == ("new-1", "new-2")
    owner = r.resolve(event(customer_id="c-1", cookie="ck"))
    assert owner == "new-2"
    # new-1 was never written: nothing to repoint in the store.
    assert r.merges == []
    assert list(r.profiles) == ["new-2"]
    assert r.final("new-1") == "new-2"
    assert sorted(r.new_identifiers) == [
        ("cookie", "ck", "new-2", RECEIVED),
        ("customer_id", "c-1", "new-2", RECEIVED),
    ]


def test_final_follows_a_chain_of_merges():
    r = resolver()
    r.resolve(event(cookie="ck"))  # new-1
    r.resolve(event(device_id="dev"))  # new-2
    r.resolve(event(device_id="dev", cookie="ck"))  # new-1 → new-2
    r.resolve(event(customer_id="c-1"))  # new-3
    r.resolve(event(customer_id="c-1", device_id="dev"))  # new-2 → new-3
    assert r.final("new-1") == "new-3"
    assert r.final("new-2") == "new-3"
    assert list(r.profiles) == ["new-3"]


# -- profile attributes and subscriptions ---------------------------------------------------------


def test_identify_updates_profile_attributes_other_events_do_not():
    r = resolver(stored("p", customer_id="c-1"), index={("customer_id", "c-1"): "p"})
    r.resolve(event(event="identify", customer_id="c-1", first_name="Ann", plan="gold"))
    assert r.profiles["p"].attributes == {"first_name": "Ann", "plan": "gold"}
    assert r.profiles["p"].updated_ms == RECEIVED
    r.resolve(event(event="view", customer_id="c-1", first_name="Bob"))
    assert r.profiles["p"].attributes == {"first_name": "Ann", "plan": "gold"}
    r.resolve(event(event="identify", customer_id="c-1", first_name="Bea"))
    assert r.profiles["p"].attributes == {"first_name": "Bea", "plan": "gold"}


@pytest.mark.parametrize(
    "field",
    ["event", "event_uuid", "timestamp", "customer_id", "email", "cookie", "subscription_groups"],
)
def test_identifiers_and_event_fields_are_not_profile_attributes(field):
    r = resolver()
    body = {
        "event": "identify",
        "customer_id": "c-1",
        "email": "jane@example.com",
        "cookie": "ck",
        "timestamp": "2023-01-01T00:00:00Z",
        "subscription_groups": [{"id": "news", "subscribed": True}],
        "first_name": "Ann",
    }
    owner = r.resolve(event(**body))
    attributes = r.profiles[owner].attributes
    assert field not in attributes
    assert attributes["first_name"] == "Ann"


def test_subscription_groups_update_the_profile_subscriptions():
    r = resolver()
    groups = [{"id": "news", "subscribed": True}, {"id": "promo", "subscribed": False}]
    owner = r.resolve(event(event="subscription_update", cookie="ck", subscription_groups=groups))
    assert r.profiles[owner].subscriptions == {"news": True, "promo": False}
    r.resolve(event(cookie="ck", subscription_groups=[{"id": "promo", "subscribed": True}]))
    assert r.profiles[owner].subscriptions == {"news": True, "promo": True}
    assert r.profiles[owner].attributes == {}


def test_chains_of_merges_leave_every_identifier_on_a_live_profile() -> None:
    """Anonymous profiles merged into each other, then into an identified one, in one batch:
    every identifier, stored or new, ends on a profile that still exists, each new identifier
    is recorded on the profile the index gives it, and every merge is recorded once."""
    import random

    rng = random.Random(5)
    for _ in range(200):
        r = resolver(
            stored("s1", cookie_seen=1),
            stored("s2", customer_id="c-2"),
            index={("cookie", "k0"): "s1", ("customer_id", "c-2"): "s2"},
        )
        owners = []
        for _ in range(30):
            body: dict[str, Any] = {}
            for kind, values in (
                ("customer_id", ["c-1", "c-2", "c-3"]),
                ("email", ["a@example.com", "b@example.com"]),
                ("device_id", ["d0", "d1", "d2", "d3"]),
                ("cookie", ["k0", "k1", "k2", "k3"]),
            ):
                if rng.random() < 0.35:
                    body[kind] = rng.choice(values)
            if not body:
                body["cookie"] = rng.choice(["k0", "k1"])
            owners.append(r.resolve(event(**body)))
        assert all(r.final(o) in r.profiles for o in owners)
        assert set(r.index.values()) <= set(r.profiles)
        for kind, value, uuid, _ in r.new_identifiers:
            assert uuid in r.profiles
            assert r.index[(kind, value)] == uuid
        losers = [m.loser for m in r.merges]
        assert len(losers) == len(set(losers))
        assert not set(losers) & set(r.profiles)


# -- the profile's email ----------------------------------------------------------------------


def known_customer() -> IdentityResolver:
    return resolver(
        stored("c", customer_id="1", email="old@example.com"),
        index={
            ("customer_id", "1"): "c",
            ("email", "old@example.com"): "c",
            ("email_hash", md5("old@example.com")): "c",
        },
    )


def later(**body: Any) -> Any:
    body.setdefault("event", "view")
    return validate_event(body, RECEIVED + 5000)


def test_identify_with_a_new_email_makes_it_the_profile_email():
    r = known_customer()
    owner = r.resolve(later(event="identify", customer_id="1", email="New@Example.com"))
    profile = r.profiles[owner]
    assert (owner, profile.email, profile.changed) == ("c", "new@example.com", True)
    assert profile.updated_ms == RECEIVED + 5000
    # The old email keeps finding the profile; the new one is an identifier of it too.
    assert r.index[("email", "old@example.com")] == "c"
    assert ("email", "new@example.com", "c", RECEIVED + 5000) in r.new_identifiers
    # The newest identify wins, also when it carries an email the profile had before.
    r.resolve(later(event="identify", customer_id="1", email="old@example.com"))
    assert profile.email == "old@example.com"


def test_other_events_add_an_email_but_do_not_replace_the_profile_email():
    r = known_customer()
    r.resolve(later(event="purchase", customer_id="1", email="other@example.com"))
    assert r.profiles["c"].email == "old@example.com"
    assert r.index[("email", "other@example.com")] == "c"
    first = resolver()
    owner = first.resolve(event(event="view", cookie="k", email="first@example.com"))
    assert first.profiles[owner].email == "first@example.com"


def test_identify_with_the_same_email_changes_nothing():
    r = known_customer()
    r.resolve(later(event="identify", customer_id="1", email="OLD@example.com"))
    profile = r.profiles["c"]
    assert (profile.email, profile.changed, profile.updated_ms) == (
        "old@example.com",
        False,
        RECEIVED - 1000,
    )


def test_an_email_another_customer_holds_does_not_become_the_profile_email():
    r = resolver(
        stored("one", customer_id="1", email="one@example.com"),
        stored("two", customer_id="2", email="two@example.com"),
        index={
            ("customer_id", "1"): "one",
            ("email", "one@example.com"): "one",
            ("customer_id", "2"): "two",
            ("email", "two@example.com"): "two",
        },
    )
    r.resolve(later(event="identify", customer_id="2", email="one@example.com"))
    assert (r.profiles["one"].email, r.profiles["two"].email) == (
        "one@example.com",
        "two@example.com",
    )
    assert len(r.conflicts) == 1
