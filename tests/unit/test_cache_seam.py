"""The cache's seam (``persistence._cache_redis.SharedTier``): the front runs on any
class with its methods. Here an in-memory one stands in for Redis, shared by two
fronts as two processes share a Redis, to show the front asks the tier (not Redis) for
everything: lookups, fills under the epoch read, writes after commits, epochs."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

from persistence._cache_front import ReadCache
from persistence._cache_redis import Fetched, SharedTier
from persistence.cache import Entry, Kind

RAW = Kind("raw", pack=lambda meta: meta, unpack=lambda meta: meta)


class MemoryTier:
    """A shared tier in a dict: entries per (tenant, key), an epoch per tenant."""

    ttl_ms = 30_000

    def __init__(self) -> None:
        self.entries: dict[tuple[uuid.UUID, str], tuple[int, Entry]] = {}
        self.epochs: dict[uuid.UUID, int] = {}
        self.floors: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
        self.published: list[tuple[str, bytes]] = []
        self.closed = False

    def _floor(self, tenant_id: uuid.UUID, floor: str | None) -> int:
        found = self.floors.get((tenant_id, floor or ""))
        return found[1] if found and found[0] == self.epochs.get(tenant_id, 0) else 0

    def get(self, tenant_id: uuid.UUID, key: str, *, floor: str | None = None) -> Fetched:
        epoch = self.epochs.get(tenant_id, 0)
        found = self.entries.get((tenant_id, key))
        if found is None or found[0] != epoch or found[1].version < self._floor(tenant_id, floor):
            return Fetched(epoch, None)
        return Fetched(epoch, replace(found[1], written_at=time.time()))

    def put(
        self, tenant_id: uuid.UUID, key: str, entry: Entry, *, epoch: int, floor: str | None = None
    ) -> bool:
        found = self.entries.get((tenant_id, key))
        if epoch != self.epochs.get(tenant_id, 0) or (found and found[1].version >= entry.version):
            return False
        if entry.version < self._floor(tenant_id, floor):
            return False
        self.entries[(tenant_id, key)] = (epoch, entry)
        return True

    def drop(self, tenant_id: uuid.UUID, key: str) -> None:
        self.entries.pop((tenant_id, key), None)

    def bump_epoch(self, tenant_id: uuid.UUID, *, publish: tuple[str, bytes] | None = None) -> bool:
        self.epochs[tenant_id] = self.epochs.get(tenant_id, 0) + 1
        return True

    def write(
        self,
        tenant_id: uuid.UUID,
        key: str,
        entry: Entry | None,
        *,
        floor: int,
        publish: tuple[str, bytes],
    ) -> bool:
        self.entries.pop((tenant_id, key), None)
        if entry is not None:
            self.entries[(tenant_id, key)] = (self.epochs.get(tenant_id, 0), entry)
        else:
            self.floors[(tenant_id, key)] = (self.epochs.get(tenant_id, 0), floor)
        self.published.append(publish)
        return True

    def stats(self) -> Any:
        return {"entries": len(self.entries)}

    def close(self) -> None:
        self.closed = True


def _front(tier: SharedTier) -> ReadCache:
    return ReadCache(local_bytes=1 << 20, ttl=30, max_stale=2, shared=tier)


def test_two_fronts_share_what_one_tier_holds() -> None:
    tier, tenant = MemoryTier(), uuid.uuid4()
    first, second = _front(tier), _front(tier)
    entry, ticket = first.get(tenant, RAW, "k")
    assert entry is None and ticket.epoch == 0  # a miss: fill under the epoch read
    first.fill(tenant, RAW, "k", Entry(1, b"v1", b"m"), ticket)
    served, _ = second.get(tenant, RAW, "k")  # "another process": from the tier
    assert served is not None and (served.version, served.value, served.meta) == (1, b"v1", b"m")
    assert second.stats().served_shared == 1 and second.stats().shared == {"entries": 1}

    first.committed(tenant, RAW, "k", Entry(2, b"v2", b"m"), floor=2)
    assert tier.entries[(tenant, "k")][1].value == b"v2" and len(tier.published) == 1
    first.fill(tenant, RAW, "k", Entry(1, b"v1", b"m"), ticket)  # a slow, stale fill
    assert tier.entries[(tenant, "k")][1].version == 2  # refused


def test_a_tenant_change_moves_the_tiers_epoch_and_close_reaches_it() -> None:
    tier, tenant, other = MemoryTier(), uuid.uuid4(), uuid.uuid4()
    front = _front(tier)
    for who in (tenant, other):
        _, ticket = front.get(who, RAW, "k")
        front.fill(who, RAW, "k", Entry(1, b"v", b"m"), ticket)
    front.tenant_changed(tenant)
    assert tier.epochs == {tenant: 1}
    assert _front(tier).get(tenant, RAW, "k")[0] is None  # unservable in every front
    assert _front(tier).get(other, RAW, "k")[0] is not None  # the other tenant's stays
    front.close()
    assert tier.closed
