"""What the SQLite writer remembers between its transactions: the rows a group commit reads
(attribute types, identifier to customer, profiles), kept as the database holds them.

The writer is the one connection that writes the file, so what it wrote stays true until it
writes again. Two things break that, and each empties the cache: another connection committing
(a command beside the server: `PRAGMA data_version` moves, checked at the start of every group
commit) and a write of the writer's own that the cache does not follow (a failed or rolled-back
transaction, whose plan had already changed cached profiles, or any write that is not an ingest:
deleting a customer or an attribute type). The cache only ever holds what a committed
transaction left, so a miss or an evicted entry is simply read again.
"""

from __future__ import annotations

from itertools import islice

from trackway.domain.batch import AccountPlan
from trackway.domain.identity import Profile

# Entries per kind, over every account, before the oldest half is dropped: about 60 MiB at
# most for the writer process (a profile with a few attributes is some 700 bytes here).
MAX_PROFILES = 50_000
MAX_IDENTIFIERS = 100_000
# An import without a server keeps its memory bounded (its peak RSS, 1M lines of 100,000
# customers: 307 MiB with the writer process's bounds, against 265 MiB with no cache).
IMPORT_MAX_PROFILES = 10_000
IMPORT_MAX_IDENTIFIERS = 20_000


class AccountCache:
    __slots__ = ("identifiers", "merged", "profiles", "types")

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        # (kind, value) -> customer uuid, as identifiers holds it when cached; a merge since
        # then is followed through `merged` (loser -> winner).
        self.identifiers: dict[tuple[str, str], str] = {}
        self.merged: dict[str, str] = {}
        self.profiles: dict[str, Profile] = {}

    def owner(self, pair: tuple[str, str]) -> str | None:
        uuid = self.identifiers.get(pair)
        if uuid is not None and self.merged:
            while uuid in self.merged:
                uuid = self.merged[uuid]
        return uuid


class WriterCache:
    def __init__(self, max_profiles: int | None = None, max_identifiers: int | None = None) -> None:
        self.max_profiles = MAX_PROFILES if max_profiles is None else max_profiles
        self.max_identifiers = MAX_IDENTIFIERS if max_identifiers is None else max_identifiers
        self.accounts: dict[int, AccountCache] = {}
        # The data_version of the connection the cache follows (None: nothing cached yet).
        self.data_version: int | None = None
        self._profiles = 0
        self._identifiers = 0

    def clear(self) -> None:
        self.accounts.clear()
        self.data_version = None
        self._profiles = 0
        self._identifiers = 0

    def follow(self, data_version: int) -> None:
        """At the start of a group commit: forget everything if another connection wrote."""
        if data_version != self.data_version:
            self.clear()
            self.data_version = data_version

    def account(self, account_id: int) -> AccountCache:
        cache = self.accounts.get(account_id)
        if cache is None:
            cache = self.accounts[account_id] = AccountCache()
        return cache

    def adopt(self, plan: AccountPlan) -> None:
        """What the plan's transaction leaves in the database, once it commits (the writer
        empties the cache if it does not)."""
        resolver = plan.identity
        cache = self.account(plan.account_id)
        for name, kind in plan.new_attribute_types:
            cache.types[name] = kind
        if resolver is None:
            return
        profiles = cache.profiles
        before = len(profiles)
        for merge in resolver.merges:
            cache.merged[merge.loser] = merge.winner
            profiles.pop(merge.loser, None)
        # Popped and put back: the dicts stay in order of last use, oldest first.
        for profile in resolver.profiles.values():
            profile.is_new = profile.changed = profile.seen_moved = False
            profiles.pop(profile.uuid, None)
            profiles[profile.uuid] = profile
        identifiers = cache.identifiers
        size = len(identifiers)
        for pair, uuid in resolver.index.items():
            identifiers.pop(pair, None)
            identifiers[pair] = uuid
        self._profiles += len(profiles) - before
        self._identifiers += len(identifiers) - size
        if self._profiles > self.max_profiles or self._identifiers > self.max_identifiers:
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used entries of every account, down to half the bounds."""
        keep_profiles = self.max_profiles // 2 / max(self._profiles, 1)
        keep_identifiers = self.max_identifiers // 2 / max(self._identifiers, 1)
        self._profiles = self._identifiers = 0
        for cache in self.accounts.values():
            drop = len(cache.profiles) - int(len(cache.profiles) * min(keep_profiles, 1.0))
            for uuid in list(islice(cache.profiles, drop)):
                del cache.profiles[uuid]
            drop = len(cache.identifiers) - int(len(cache.identifiers) * min(keep_identifiers, 1))
            for pair in list(islice(cache.identifiers, drop)):
                del cache.identifiers[pair]
            # The redirects, folded into the identifiers left: they would outgrow every bound.
            if cache.merged:
                for pair in cache.identifiers:
                    owner = cache.owner(pair)
                    assert owner is not None
                    cache.identifiers[pair] = owner
                cache.merged.clear()
            self._profiles += len(cache.profiles)
            self._identifiers += len(cache.identifiers)
