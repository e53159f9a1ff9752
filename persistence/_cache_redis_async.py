"""The read cache's shared tier: versioned entries in Redis, guarded by scripts (issue
13; the sync module ``_cache_redis.py`` is generated from this one), behind the cache's
front (``persistence._cache_front``).

Keys: ``{prefix}:{<tenant id>}:cache:<key>`` for an entry (one string: its epoch,
version, meta and value, or a tombstone) and ``{prefix}:{<tenant id>}:cache-epoch`` for the
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
from typing import Any, NamedTuple, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from persistence._redis_direct_async import Direct, bulk, sha1
from persistence.cache import Entry

__all__ = [
    "ENTRY_KEY",
    "EPOCH_KEY",
    "AsyncRedisTier",
    "AsyncSharedTier",
    "Fetched",
    "RedisTierStats",
    "tenant_tag",
]

# An entry is one string: "E:<epoch>:<version>:<written>:<meta length>:<meta><value>"
# (<written>: the writer's clock, in ms, when it sent the entry); a writer's
# tombstone is "T:<epoch>:<floor>:". One string, so a read is one MGET of the epoch and
# the entry (two keys of one slot), with no script and two replies to parse.
_HEAD = """
local function head(cur)
    if not cur then return nil end
    local kind, e, v = string.match(cur, '^(%u):(%d+):(%d+):')
    return kind, e, tonumber(v)
end
"""
# KEYS: epoch, entry[, floor]. ARGV: epoch seen, version, "<meta length>:<meta><value>",
# ttl ms. The floor key (its tombstone's floor) bounds a group of entries: a state's
# versions (see persistence.repositories._cached).
_PUT = (
    _HEAD
    + """
local epoch = redis.call('GET', KEYS[1]) or '0'
if epoch ~= ARGV[1] then return 0 end
if KEYS[3] then  -- a floor key: no fill of a version below its tombstone
    local fkind, fe, floor = head(redis.call('GET', KEYS[3]))
    if fe == epoch and tonumber(ARGV[2]) < floor then return 0 end
end
local kind, e, version = head(redis.call('GET', KEYS[2]))
if e == epoch then
    local new = tonumber(ARGV[2])
    if kind == 'T' then
        if new < version then return 0 end
    elseif new <= version then
        return 0
    end
end
redis.call('SET', KEYS[2], 'E:' .. epoch .. ':' .. ARGV[2] .. ':' .. ARGV[3], 'PX', ARGV[4])
return 1
"""
)
# KEYS: epoch, entry. ARGV: floor, ttl ms. A tombstone: fills below ``floor`` refused.
_INVALIDATE = (
    _HEAD
    + """
local epoch = redis.call('GET', KEYS[1]) or '0'
local kind, e, version = head(redis.call('GET', KEYS[2]))
if e == epoch and version >= tonumber(ARGV[1]) then
    return 0  -- an entry or a tombstone as new already: a late invalidation lowers nothing
end
redis.call('SET', KEYS[2], 'T:' .. epoch .. ':' .. ARGV[1] .. ':', 'PX', ARGV[2])
return 1
"""
)
# KEYS: epoch, entry. ARGV: version, "<meta length>:<meta><value>", ttl ms, tombstone
# (1/0), channel, message. A writer's commit: its entry (for a delete, a tombstone at
# the floor) replaces anything older, and the other processes hear of it.
_WRITE = (
    _HEAD
    + """
local epoch = redis.call('GET', KEYS[1]) or '0'
local kind, e, version = head(redis.call('GET', KEYS[2]))
if not (e == epoch and version > tonumber(ARGV[1])) then
    local body = 'E:' .. epoch .. ':' .. ARGV[1] .. ':' .. ARGV[2]
    if ARGV[4] == '1' then body = 'T:' .. epoch .. ':' .. ARGV[1] .. ':' end
    redis.call('SET', KEYS[2], body, 'PX', ARGV[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""
)
# KEYS: epoch. ARGV: ttl ms, channel, message. Every entry of the tenant unservable,
# everywhere. The epoch outlives every entry filled before it moved (see EPOCH_TTL_MS).
_BUMP = """
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
#: How long a tenant's epoch lives after it last moved: it only has to outlive the
#: entries filled under the epoch before (cache_ttl, far less), and an epoch that
#: expired starts again at 0, under which every entry older than that has expired too.
EPOCH_TTL_MS = 86_400_000
#: What follows a tenant's tag (:func:`tenant_tag`) in its epoch's key and its entries'.
EPOCH_KEY, ENTRY_KEY = ":cache-epoch", ":cache:"
_TAGS = 4096  # tenants whose key prefix a tier keeps at hand
# A hit's MGET (of the epoch and the entry, and a floor key), its fixed first part.
_MGET = {2: b"*3\r\n$4\r\nMGET\r\n", 3: b"*4\r\n$4\r\nMGET\r\n"}


def _body(entry: Entry) -> bytes:
    """What follows an entry's version: ``<written>:<meta length>:<meta><value>``."""
    meta = b"" if entry.meta is None else entry.meta
    return b"%d:%d:%b%b" % (int(time.time() * 1000), len(meta), meta, entry.value)


def _parse(raw: bytes, epoch: int) -> Entry | None:
    """The entry ``raw`` holds, if it is one (not a tombstone) of ``epoch``."""
    if raw[:2] != b"E:":
        return None
    _, raw_epoch, version, written, length, rest = raw.split(b":", 5)
    if int(raw_epoch) != epoch:
        return None
    start = int(length)
    meta = rest[:start] or None
    return Entry(int(version), rest[start:], meta, written_at=int(written) / 1000)


def _floor(raw: bytes | None, epoch: int) -> int:
    """The floor a tombstone (or entry) ``raw`` of ``epoch`` sets; 0 for anything else."""
    if raw is None or raw[1:2] != b":":
        return 0
    at = raw.index(b":", 2)
    if int(raw[2:at]) != epoch:
        return 0
    return int(raw[at + 1 : raw.index(b":", at + 1)])


class Fetched(NamedTuple):
    """What a read found: the tenant's epoch (to fill under, after a miss) and the entry
    (None: a miss, a tombstone, or an entry of an older epoch). ``epoch`` is None when
    Redis could not be asked: then nothing may be filled either. (A tuple: one is built
    on every read.)"""

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


def tenant_tag(prefix: str, tenant_id: object) -> str:
    """``<prefix>:{<tenant id>}``, which begins every cache key of the tenant: a Redis
    Cluster hash tag (the tenant's keys share a slot)."""
    return f"{prefix}:{{{tenant_id}}}"


_UNANSWERED = Fetched(None, None)


@dataclass(frozen=True, slots=True)
class _Tag:
    """What a tier keeps per tenant: the prefix of its keys (:func:`tenant_tag`), that of
    its entries' keys, and its epoch key as an argument of a RESP command (every hit's
    MGET begins with it)."""

    base: str
    entries: str
    epoch_arg: bytes


class AsyncSharedTier(Protocol):
    """The seam between the cache's front and its shared tier: the Redis tier below
    (a Redis, a Valkey or, through redis-py's cluster client, a Redis Cluster); a fake
    in tests; another backend (a memcached) would be one class. Every method fails
    open: it returns a miss or False rather than raise."""

    ttl_ms: int

    async def get(self, tenant_id: uuid.UUID, key: str, *, floor: str | None = None) -> Fetched:
        """The tenant's epoch and ``key``'s entry under it (None when absent, stale or
        of an older epoch, or below the tombstone of the key ``floor``);
        ``Fetched(None, None)`` when the tier did not answer."""

    async def put(
        self, tenant_id: uuid.UUID, key: str, entry: Entry, *, epoch: int, floor: str | None = None
    ) -> bool:
        """A fill: kept only if ``epoch`` is still the tenant's and nothing of the same
        or a newer version (nor a tombstone above it, under ``key`` or ``floor``) is
        there."""

    async def drop(self, tenant_id: uuid.UUID, key: str) -> None:
        """Forget ``key``'s entry (it failed its checksum)."""

    async def bump_epoch(
        self, tenant_id: uuid.UUID, *, publish: tuple[str, bytes] | None = None
    ) -> bool:
        """Make every entry of the tenant unservable; then publish ``(channel, note)``."""

    async def write(
        self,
        tenant_id: uuid.UUID,
        key: str,
        entry: Entry | None,
        *,
        floor: int,
        publish: tuple[str, bytes],
    ) -> bool:
        """After a commit: ``entry`` (None: a tombstone at ``floor``) replaces anything
        older; then publish."""

    def stats(self) -> Any:
        """The tier's counts (``CacheStats.shared``)."""

    async def close(self) -> None:
        """Release what the tier holds of its own."""


class AsyncRedisTier:
    """The shared tier on ``client`` (``redis.asyncio.Redis``, or a cluster client)."""

    def __init__(self, client: Redis, prefix: str, *, ttl_ms: int = 60_000, breaker_s: float = 5.0):
        self._factory = client if callable(client) else (lambda: client)
        self._prefix = prefix
        self.ttl_ms = ttl_ms
        self.breaker_s = breaker_s
        self._scripts: dict[str, Any] = {}  # (a cluster client's Script objects)
        self._shas: dict[str, str] = {}
        self._open_until = 0.0  # the breaker: no call to Redis before this (monotonic)
        self._directs: dict[int, Direct] = {}  # by the client's pool (see _direct)
        self._last: tuple[object, Direct | None] = (None, None)  # (a client, its Direct)
        self._tags: dict[uuid.UUID, _Tag] = {}
        self._counts = dict.fromkeys(
            ("hits", "misses", "fills", "refused_fills", "invalidations", "errors", "skipped"), 0
        )

    @property
    def _client(self) -> Redis:
        return self._factory()

    def _tag(self, tenant_id: uuid.UUID) -> _Tag:
        tag = self._tags.get(tenant_id)
        if tag is None:
            if len(self._tags) >= _TAGS:
                self._tags.clear()
            base = tenant_tag(self._prefix, tenant_id)
            tag = self._tags[tenant_id] = _Tag(base, base + ENTRY_KEY, bulk(base + EPOCH_KEY))
        return tag

    def _keys(self, tenant_id: uuid.UUID, key: str, floor: str | None = None) -> list[str]:
        tag = self._tag(tenant_id)
        keys = [tag.base + EPOCH_KEY, tag.entries + key]
        if floor is not None:
            keys.append(tag.entries + floor)
        return keys

    async def _send(self, command: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await command(*args)`` (one Redis round trip); None, counted, if the breaker
        is open or Redis failed (which opens the breaker for ``breaker_s``)."""
        if time.monotonic() < self._open_until:
            self._counts["skipped"] += 1
            return None
        try:
            return await command(*args)
        except (RedisError, RedisClusterException, OSError):
            self._counts["errors"] += 1
            self._open_until = time.monotonic() + self.breaker_s
            return None

    def _direct(self) -> Direct | None:
        """The tier's own connections (``persistence._redis_direct``), made like those of
        the client's pool; None for a cluster client (it routes each command itself)."""
        client = self._factory()
        last_client, last = self._last
        if client is last_client:
            return last
        pool = getattr(client, "connection_pool", None)
        direct = None
        if pool is not None:
            direct = self._directs.get(id(pool))
            if direct is None:  # (two threads at once: both get the one kept)
                direct = self._directs.setdefault(id(pool), Direct(pool))
        self._last = (client, direct)
        return direct

    async def _call(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script by its SHA (loaded when Redis does not know it); None as for
        :meth:`_send`."""

        async def run() -> Any:
            direct = self._direct()
            if direct is None:
                script = self._scripts.get(source)
                if script is None:
                    script = self._scripts[source] = self._client.register_script(source)
                return await script(keys=keys, args=args)
            sha = self._shas.get(source) or self._shas.setdefault(source, sha1(source))
            return await direct.script(self._client, source, sha, len(keys), *keys, *args)

        return await self._send(run)

    async def _mget(self, tenant_id: uuid.UUID, key: str, floor: str | None) -> Any:
        """``MGET`` of :meth:`_keys` (a hit's one command) on the tier's own connections,
        packed from the tenant's prebuilt part (as :func:`packed` would pack it)."""
        direct = self._direct()
        if direct is None:
            return await self._client.mget(self._keys(tenant_id, key, floor))
        tag = self._tags.get(tenant_id) or self._tag(tenant_id)
        entry = (tag.entries + key).encode()
        command = _MGET[2 if floor is None else 3] + tag.epoch_arg
        command += b"$%d\r\n%b\r\n" % (len(entry), entry)
        if floor is not None:
            command += bulk(tag.entries + floor)
        return await direct.command(command)

    async def close(self) -> None:
        """Close the tier's own connections (the client is its owner's to close)."""
        directs, self._directs = list(self._directs.values()), {}
        self._last = (None, None)
        for direct in directs:
            await direct.close()

    async def get(self, tenant_id: uuid.UUID, key: str, *, floor: str | None = None) -> Fetched:
        reply = await self._send(self._mget, tenant_id, key, floor)
        if reply is None:
            return _UNANSWERED
        epoch = int(reply[0] or 0)
        entry = _parse(reply[1], epoch) if reply[1] is not None else None
        if entry is not None and floor is not None and entry.version < _floor(reply[2], epoch):
            entry = None
        self._counts["misses" if entry is None else "hits"] += 1
        return Fetched(epoch, entry)

    async def put(
        self, tenant_id: uuid.UUID, key: str, entry: Entry, *, epoch: int, floor: str | None = None
    ) -> bool:
        """Fill ``key`` with ``entry`` (its ``meta`` bytes or None; empty bytes read back
        as None), read under ``epoch`` (from :meth:`get`); whether it was kept (see the
        module: stale fills are refused, below ``floor``'s tombstone too)."""
        args = [epoch, entry.version, _body(entry), self.ttl_ms]
        done = await self._call(_PUT, self._keys(tenant_id, key, floor), args)
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

    async def drop(self, tenant_id: uuid.UUID, key: str) -> None:
        """Delete the entry under ``key`` (one that failed its checksum)."""
        entry_key = self._keys(tenant_id, key)[1]
        await self._send(lambda: self._client.delete(entry_key))

    async def bump_epoch(
        self, tenant_id: uuid.UUID, *, publish: tuple[str, bytes] | None = None
    ) -> bool:
        """Make every entry of the tenant unservable at once (and, with ``publish``,
        ``(channel, message)``, tell the other processes); False if Redis failed (its
        entries then expire after ``ttl_ms``)."""
        channel, note = publish if publish is not None else ("", b"")
        ttl = max(EPOCH_TTL_MS, 2 * self.ttl_ms)
        done = await self._call(_BUMP, self._keys(tenant_id, "")[:1], [ttl, channel, note])
        if done is None:
            return False
        self._counts["invalidations"] += 1
        return True

    async def write(
        self,
        tenant_id: uuid.UUID,
        key: str,
        entry: Entry | None,
        *,
        floor: int,
        publish: tuple[str, bytes],
    ) -> bool:
        """After a commit: ``entry`` (None: a tombstone at ``floor``) replaces anything
        older under ``key``, and ``publish`` (channel, message) goes out; False if
        Redis failed."""
        if entry is None:
            args = [floor, b"", self.ttl_ms, 1, *publish]
        else:
            args = [entry.version, _body(entry), self.ttl_ms, 0, *publish]
        done = await self._call(_WRITE, self._keys(tenant_id, key), args)
        if done is not None:
            self._counts["invalidations"] += 1
        return done is not None

    def stats(self) -> RedisTierStats:
        return RedisTierStats(**self._counts)
