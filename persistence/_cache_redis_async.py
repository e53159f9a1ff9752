"""The read cache's shared tier: versioned entries in Redis, guarded by scripts (issue
13; the sync module ``_cache_redis.py`` is generated from this one). Not wired into the
repositories yet.

Keys: ``{prefix}:{<tenant id>}:cache:<key>`` for an entry (a hash: epoch, version,
value, meta, or a tombstone) and ``{prefix}:{<tenant id>}:cache-epoch`` for the
tenant's epoch. The braces are a Redis Cluster hash tag: a tenant's keys share a slot,
so one script may read the epoch and the entry together.

* **Epochs.** An entry is served only under the epoch it was filled in; bumping the
  tenant's epoch (suspension, deletion, a renamed slug, a deleted workspace) makes
  every entry of the tenant unservable in one command, with no key scan.
* **No stale set.** A fill carries the version of the row it read and the epoch seen
  when the read began: it is refused if the epoch moved since, if a live entry of the
  same or a newer version is there, or if a tombstone says its version is stale. A
  writer's invalidation leaves such a tombstone (``floor``: versions below it are
  stale), so a slow reader cannot bring back what the writer replaced.
* **Fails open.** A Redis error never reaches the caller: a read is a miss and a fill
  or an invalidation is dropped (entries expire after ``ttl_ms`` in any case), and for
  ``breaker_s`` seconds after an error the tier is skipped without a round trip.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from persistence.cache import Entry

__all__ = ["AsyncRedisTier", "Fetched", "RedisTierStats"]

# KEYS: epoch, entry. Returns the epoch and the entry's fields.
_GET = """
local e = redis.call('HMGET', KEYS[2], 'epoch', 'version', 'value', 'meta', 'tomb')
return {redis.call('GET', KEYS[1]) or '0', e[1], e[2], e[3], e[4], e[5]}
"""
# KEYS: epoch, entry. ARGV: epoch seen, version, value, meta, ttl ms. 1 if filled.
_PUT = """
local epoch = redis.call('GET', KEYS[1]) or '0'
if epoch ~= ARGV[1] then return 0 end
local cur = redis.call('HMGET', KEYS[2], 'epoch', 'version', 'tomb')
if cur[1] == epoch and cur[2] then
    local version, new = tonumber(cur[2]), tonumber(ARGV[2])
    if cur[3] then
        if new < version then return 0 end
    elseif new <= version then
        return 0
    end
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'version', ARGV[2], 'value', ARGV[3], 'meta', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""
# KEYS: epoch, entry. ARGV: floor, ttl ms. A tombstone: fills below ``floor`` refused.
_INVALIDATE = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local cur = redis.call('HMGET', KEYS[2], 'epoch', 'version')
if cur[1] == epoch and cur[2] and tonumber(cur[2]) >= tonumber(ARGV[1]) then
    return 0  -- an entry or a tombstone as new already: a late invalidation lowers nothing
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'version', ARGV[1], 'tomb', '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a read found: the tenant's epoch (to fill under, after a miss) and the entry
    (None: a miss, a tombstone, or an entry of an older epoch). ``epoch`` is None when
    Redis could not be asked: then nothing may be filled either."""

    epoch: int | None
    entry: Entry | None


@dataclass(frozen=True, slots=True)
class RedisTierStats:
    hits: int
    misses: int
    fills: int
    refused_fills: int
    invalidations: int
    errors: int
    skipped: int  # calls not sent while the breaker was open


class AsyncRedisTier:
    """The shared tier on ``client`` (``redis.asyncio.Redis``, or a cluster client)."""

    def __init__(self, client: Redis, prefix: str, *, ttl_ms: int = 60_000, breaker_s: float = 5.0):
        self._client = client
        self._prefix = prefix
        self.ttl_ms = ttl_ms
        self.breaker_s = breaker_s
        self._scripts: dict[str, Any] = {}
        self._open_until = 0.0  # the breaker: no call to Redis before this (monotonic)
        self._counts = dict.fromkeys(
            ("hits", "misses", "fills", "refused_fills", "invalidations", "errors", "skipped"), 0
        )

    def _keys(self, tenant_id: uuid.UUID, key: str) -> list[str]:
        base = f"{self._prefix}:{{{tenant_id}}}"
        return [f"{base}:cache-epoch", f"{base}:cache:{key}"]

    async def _send(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """``await command()`` (one Redis round trip); None, counted, if the breaker is
        open or Redis failed (which opens the breaker for ``breaker_s``)."""
        if time.monotonic() < self._open_until:
            self._counts["skipped"] += 1
            return None
        try:
            return await command()
        except (RedisError, OSError):
            self._counts["errors"] += 1
            self._open_until = time.monotonic() + self.breaker_s
            return None

    async def _call(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script (loaded once, then by its SHA); None as for :meth:`_send`."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client.register_script(source)
        return await self._send(lambda: script(keys=keys, args=args))

    async def get(self, tenant_id: uuid.UUID, key: str) -> Fetched:
        reply = await self._call(_GET, self._keys(tenant_id, key), [])
        if reply is None:
            return Fetched(None, None)
        epoch_raw, entry_epoch, version, value, meta, tomb = reply
        epoch = int(epoch_raw)
        if entry_epoch is None or tomb is not None or int(entry_epoch) != epoch:
            self._counts["misses"] += 1
            return Fetched(epoch, None)
        self._counts["hits"] += 1
        return Fetched(epoch, Entry(int(version), bytes(value), bytes(meta) if meta else None))

    async def put(self, tenant_id: uuid.UUID, key: str, entry: Entry, *, epoch: int) -> bool:
        """Fill ``key`` with ``entry`` (its ``meta`` bytes or None; empty bytes read back
        as None), read under ``epoch`` (from :meth:`get`); whether it was kept (see the
        module: stale fills are refused)."""
        meta = b"" if entry.meta is None else entry.meta
        args = [epoch, entry.version, entry.value, meta, self.ttl_ms]
        done = await self._call(_PUT, self._keys(tenant_id, key), args)
        if done is None:
            return False
        self._counts["fills" if done else "refused_fills"] += 1
        return bool(done)

    async def invalidate(self, tenant_id: uuid.UUID, key: str, *, floor: int) -> bool:
        """After a write of version ``floor``: the entry goes, and fills of a version
        below ``floor`` are refused until it expires."""
        done = await self._call(_INVALIDATE, self._keys(tenant_id, key), [floor, self.ttl_ms])
        if done:
            self._counts["invalidations"] += 1
        return bool(done)

    async def bump_epoch(self, tenant_id: uuid.UUID) -> bool:
        """Make every entry of the tenant unservable at once; False if Redis failed (its
        entries then expire after ``ttl_ms``)."""
        if await self._send(lambda: self._client.incr(self._keys(tenant_id, "")[0])) is None:
            return False
        self._counts["invalidations"] += 1
        return True

    def stats(self) -> RedisTierStats:
        return RedisTierStats(**self._counts)
