"""The read cache in front of the database (docs/cache.md): what a repository asks, and
the rules that keep what it serves correct (the sync module ``_cache_front.py`` is
generated from this one).

Two tiers: the in-process :class:`~persistence.cache.LocalTier`, and with
``cache='shared'`` the Redis tier (``persistence._cache_redis``) behind it, kept in
step across processes by the invalidation channel (``persistence._cache_channel``).

* **Versions.** An entry carries its row's version. Per key the process keeps a
  watermark: the newest version it has read, written, or been told of (an
  invalidation raises it to its floor). Nothing below the watermark is served or
  filled: reads are monotonic, and a slow reader's fill of a row older than a write
  it has heard of is refused. A fill is also refused when watermarks were dropped
  (the process keeps a bounded number) after its read began.
* **Read-your-writes.** After a commit the written entries go into the in-process
  tier and, with ``shared``, into Redis (replacing anything older) while the
  invalidation goes out, before the unit of work's ``with`` returns.
* **Age.** An in-process entry is served while younger than ``cache_max_stale``, or
  (``shared``) while the invalidation channel has been live since it was read; never
  ``cache_ttl`` after it was read (one from Redis: after it was written there). So
  when invalidations cannot be delivered, entries stop being served after a bounded
  age. Reading the same version again renews an entry.
* **Tenants.** Every key starts with the tenant id; a tenant's local epoch (bumped
  by a suspension, deletion, renaming or workspace deletion, here or, through the
  channel, elsewhere) is part of the in-process key, and Redis keeps an epoch of its
  own (``persistence._cache_redis``): one bump makes every entry of the tenant
  unservable, with no key scan.
* **Faults.** Redis errors never reach the caller: the Redis tier fails open behind a
  circuit breaker, and a read falls back to the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from persistence._cache_channel import InvalidationChannel, message
from persistence._cache_redis_async import AsyncRedisTier, AsyncSharedTier
from persistence.cache import CacheStats, Entry, Kind, LocalTier, Marks, Ticket
from persistence.settings import Settings

__all__ = ["AsyncReadCache", "announce", "build"]

_ALL = "*"  # an invalidation of every key of a tenant
_PREFIXES = 4096  # tenants whose in-process key prefix the front keeps at hand


class AsyncReadCache:
    """The cache of one ``Database``: ``db.cache`` (None when ``cache='off'``)."""

    def __init__(
        self,
        *,
        local_bytes: int,
        ttl: float,
        max_stale: float,
        shared: AsyncSharedTier | None = None,
        channel: str = "",
        listen: Callable[[Callable[[str, str, int], None]], InvalidationChannel] | None = None,
    ):
        self.local = LocalTier(local_bytes)
        self.shared = shared
        self.ttl = ttl
        self.max_stale = max_stale
        self._channel_name = channel
        self._marks = Marks()
        self._epochs: dict[str, int] = {}
        # Per tenant id: its in-process key prefix "<tenant>|<epoch>|", as of the
        # number of epoch bumps it was built after (stale once a bump followed).
        self._prefixes: dict[uuid.UUID, tuple[int, str]] = {}
        self._bumps = 0
        self._counts = dict.fromkeys(("local", "shared", "stale", "received"), 0)
        self._on_tenant: list[Callable[[str], None]] = []
        self.channel = listen(self.apply) if listen is not None else None

    # -- reading ----------------------------------------------------------------------

    def _lkey(self, tenant_id: uuid.UUID, key: str) -> str:
        found = self._prefixes.get(tenant_id)
        if found is None or found[0] != self._bumps:
            bumps, tenant = self._bumps, str(tenant_id)  # (the count read before the epoch)
            if len(self._prefixes) >= _PREFIXES:
                self._prefixes.clear()
            found = self._prefixes[tenant_id] = (bumps, f"{tenant}|{self._epochs.get(tenant, 0)}|")
        return found[1] + key

    async def get(
        self, tenant_id: uuid.UUID, kind: Kind, key: str, *, floor: str | None = None
    ) -> tuple[Entry | None, Ticket]:
        """The entry to serve for ``key`` of ``tenant_id`` (its ``meta`` the record), or
        None and the ticket to fill with after reading the database. ``floor``: a key
        whose tombstone no version of ``key`` below it may pass (a state's versions)."""
        lkey, at, marks = self._lkey(tenant_id, key), time.monotonic(), self._marks
        mark, seq = marks.get(lkey), marks.dropped
        if floor is not None:
            mark = max(mark, marks.get(self._lkey(tenant_id, floor)))
        found = self.local.get(lkey)
        if found is not None and self._serves(found, mark, at, seq if floor else None):
            self._counts["local"] += 1
            return found, Ticket(lkey, seq, None, at)
        if self.shared is None:
            return None, Ticket(lkey, seq, None, at)
        fetched = await self.shared.get(tenant_id, key, floor=floor)
        entry = fetched.entry
        if entry is None:
            return None, Ticket(lkey, seq, fetched.epoch, at)
        if entry.version < mark:  # older than what this process has seen
            self._counts["stale"] += 1
            return None, Ticket(lkey, seq, None, at)
        meta = kind.unpack(entry.meta) if entry.meta is not None else None
        # Read at ``at``: a write after that is heard of through the channel. But an
        # entry that missed its invalidation in Redis (its writer could not reach it)
        # is never served in-process past cache_ttl from when it was written there.
        age = max(0.0, time.time() - entry.written_at)
        served = Entry(entry.version, entry.value, meta, at, at + self.ttl - age, 0.0, seq)
        if self.local.max_bytes:  # (a tier of no bytes never holds one: nothing to put)
            self.local.put(lkey, served)
        self._marks.raise_to(lkey, entry.version)
        self._counts["shared"] += 1
        return served, Ticket(lkey, seq, None, at)

    def _serves(self, found: Entry, mark: int, now: float, seq: int | None) -> bool:
        """Whether an in-process entry may be served: not below ``mark``, and under a
        floor (``seq``: the marks' drop count now) only if no mark was dropped since it
        was kept (the floor's own might have been), else Redis checks the floor."""
        if found.version < mark or (seq is not None and found.marks_dropped != seq):
            return False
        return self._servable(found, now)

    def _servable(self, entry: Entry, now: float) -> bool:
        """Whether an in-process entry may be served at ``now`` (see the module)."""
        if now >= entry.expires:
            self._counts["stale"] += 1
            return False
        if now - entry.filled_at < self.max_stale:
            return True
        if self.channel is None:
            self._counts["stale"] += 1
            return False
        since = self.channel.live_since
        if since is None or since > entry.filled_at:  # it may have missed its invalidation
            self._counts["stale"] += 1
            return False
        return True

    def _floor(self, tenant_id: uuid.UUID, floor: str | None) -> int:
        return 0 if floor is None else self._marks.get(self._lkey(tenant_id, floor))

    async def fill(
        self,
        tenant_id: uuid.UUID,
        kind: Kind,
        key: str,
        entry: Entry,
        ticket: Ticket,
        *,
        floor: str | None = None,
    ) -> None:
        """Keep ``entry``, read from the database after ``ticket``'s lookup, unless a
        newer version was seen meanwhile (here, or in Redis: a versioned compare-and-set
        under the epoch the lookup read), or ``floor`` rose above it."""
        below = entry.version < self._floor(tenant_id, floor)
        if below or not self._marks.allows(ticket, entry.version):
            self._counts["stale"] += 1
            return
        # (read from the database after the lookup began: as fresh as then)
        fresh = replace(
            entry, filled_at=ticket.at, expires=ticket.at + self.ttl, marks_dropped=ticket.seq
        )
        if self.local.put(ticket.lkey, fresh):
            self._marks.raise_to(ticket.lkey, entry.version)
        if self.shared is not None and ticket.epoch is not None:
            packed = Entry(entry.version, entry.value, kind.pack(entry.meta))
            await self.shared.put(tenant_id, key, packed, epoch=ticket.epoch, floor=floor)

    async def discard(self, tenant_id: uuid.UUID, key: str) -> None:
        """Drop ``key``'s entry from both tiers (it failed its checksum on the way out)."""
        self.local.invalidate(self._lkey(tenant_id, key))
        if self.shared is not None:
            await self.shared.drop(tenant_id, key)

    # -- writing ----------------------------------------------------------------------

    async def committed(
        self, tenant_id: uuid.UUID, kind: Kind, key: str, entry: Entry | None, floor: int
    ) -> None:
        """After a commit that wrote ``key``: ``entry`` (its version ``floor``) is what
        it holds now, or (None) what was there is gone and nothing below ``floor`` may
        be served. Never raises for a Redis failure."""
        lkey = self._lkey(tenant_id, key)
        self._marks.raise_to(lkey, floor)
        if entry is None:
            self.local.invalidate(lkey, below=floor)
        else:
            self.local.invalidate(lkey, below=floor)
            now = time.monotonic()
            self.local.put(lkey, replace(entry, filled_at=now, expires=now + self.ttl))
        if self.shared is not None:
            packed = (
                None if entry is None else Entry(entry.version, entry.value, kind.pack(entry.meta))
            )
            note = (self._channel_name, message(tenant_id, key, floor))
            await self.shared.write(tenant_id, key, packed, floor=floor, publish=note)

    async def tenant_changed(self, tenant_id: uuid.UUID) -> bool:
        """A tenant was suspended, deleted or renamed, or one of its workspaces deleted:
        nothing of it is served any more, here or (``shared``) anywhere; False if the
        shared tier did not take it (its entries then expire after ``cache_ttl``)."""
        self._bump(str(tenant_id))
        if self.shared is None:
            return True
        note = (self._channel_name, message(tenant_id, _ALL, 0))
        return await self.shared.bump_epoch(tenant_id, publish=note)

    def on_tenant_changed(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(tenant id)`` whenever a tenant changes (the scopes a ``Database``
        knows: ``persistence._deferred``)."""
        self._on_tenant.append(hook)

    def _bump(self, tenant: str) -> None:
        with self._marks.lock:
            self._epochs[tenant] = self._epochs.get(tenant, 0) + 1
            self._bumps += 1  # (after the epoch moved: see _lkey)
        for hook in self._on_tenant:
            hook(tenant)

    def apply(self, tenant: str, key: str, floor: int) -> None:
        """An invalidation from the channel (another process's commit, or this one's)."""
        self._counts["received"] += 1
        if key == _ALL:
            self._bump(tenant)
            return
        lkey = f"{tenant}|{self._epochs.get(tenant, 0)}|{key}"
        self._marks.raise_to(lkey, floor)
        self.local.invalidate(lkey, below=floor)

    # -- operations -------------------------------------------------------------------

    async def flush(self, tenant_id: uuid.UUID | None = None) -> None:
        """Drop every entry (of ``tenant_id``): in-process, and in Redis for a tenant."""
        if tenant_id is not None:
            await self.tenant_changed(tenant_id)
            return
        self.local.clear()
        self._marks.clear()

    def stats(self) -> CacheStats:
        return CacheStats(
            local=self.local.stats(),
            shared=self.shared.stats() if self.shared is not None else None,
            served_local=self._counts["local"],
            served_shared=self._counts["shared"],
            refused_stale=self._counts["stale"],
            invalidations_received=self._counts["received"],
        )

    async def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.shared is not None:
            await self.shared.close()


def _channel(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}:cache-invalidations"


def _tier(settings: Settings, client: Any) -> AsyncRedisTier:
    ttl_ms = int(settings.cache_ttl * 1000)
    return AsyncRedisTier(
        client, settings.redis_key_prefix, ttl_ms=ttl_ms, breaker_s=settings.cache_breaker
    )


async def announce(settings: Settings, client: Any, tenant_id: uuid.UUID) -> bool:
    """Tell every process's cache that a tenant changed, from a process with no shared
    cache of its own (an operator's CLI): the tenant's Redis epoch moves and the channel
    says so; False if Redis did not take it."""
    note, tier = (_channel(settings), message(tenant_id, _ALL, 0)), _tier(settings, client)
    try:
        return await tier.bump_epoch(tenant_id, publish=note)
    finally:
        await tier.close()  # (its own connection: this tier lives for one command)


def build(settings: Settings, redis: Callable[[], Any]) -> AsyncReadCache:
    """The cache ``settings`` ask for (not ``off``); ``redis()`` is the database's Redis
    client (``shared``: the Redis tier's)."""
    common: dict[str, Any] = {
        "local_bytes": settings.cache_local_bytes,
        "ttl": settings.cache_ttl,
        "max_stale": settings.cache_max_stale,
    }
    if settings.cache != "shared":
        return AsyncReadCache(**common)
    url, channel = settings.redis_url, _channel(settings)
    assert url is not None  # (Settings refuses cache='shared' without it)
    tier = _tier(settings, redis)

    def listen(apply: Callable[[str, str, int], None]) -> InvalidationChannel:
        return InvalidationChannel(url, channel, apply, timeout=settings.redis_socket_timeout)

    return AsyncReadCache(**common, shared=tier, channel=channel, listen=listen)
