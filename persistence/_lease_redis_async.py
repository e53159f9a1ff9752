"""The Redis lease backend (:mod:`persistence.locks_async` chooses it; the sync module
``_lease_redis.py`` is generated from this one).

An acquire of a tenant this process has entered before (``KnownScopes``) costs one
Redis round trip and no database round trip: the tenant id is the known scope's, and
the database's fence floor (:func:`persistence.fencing_async.fence_floor`) is read only
when Redis may have lost the fence counter. That is decided in the acquire script,
atomically with the ``INCR``: the counter is trusted only if it exists and its *stamp*
(a key beside it) names the Redis server process that runs the script (its ``run_id``
and replication id, ``INFO``). A flush, an expiry or an eviction removes the counter or
the stamp; a restart (from a snapshot or not), a failover to a replica or a failback
changes the server's ids. In each case the script refuses to hand out a fence
(``-1``), the backend reads the floor and runs the script again with it, and that run
raises the counter above the floor and stamps it. A stamped counter has been raised
above the floor on this very server process, and only grows there since, so it is
above every fence the database holds (docs/leases.md, "When Redis forgets").

Commands go on connections of the backend's own (``persistence._redis_direct``), as the
read cache's do; a cluster client goes through redis-py's scripts (it routes them).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from persistence._enter import entry_ids
from persistence._redis_direct_async import Direct, sha1
from persistence.errors import LeaseLostError, LockNotAcquiredError, PersistenceError
from persistence.fencing_async import fence_floor
from persistence.models.base import utcnow
from persistence.records import LeaseRecord

if TYPE_CHECKING:
    from redis.asyncio import Redis  # sync: from redis import Redis

    from persistence.database_async import AsyncDatabase

__all__ = ["FENCE_COUNTER_RETENTION_MS", "AsyncRedisLeaseBackend", "unreachable"]

#: A fence counter not used for this long is dropped (and restarts safely, see above).
FENCE_COUNTER_RETENTION_MS = 30 * 24 * 3600 * 1000

# KEYS: lease key, fence counter, the counter's stamp. ARGV: token, ttl ms, floor (the
# highest fence in the database; '' when not read), counter retention ms.
# Returns the fence; 0 if the lease is held; -1 if the counter cannot be trusted without
# the floor (missing, or not stamped by this server process), nothing done.
# A missing counter restarts above both the floor and the current time in ms, so it also
# clears fences handed out but never written; the counter and its stamp expire so that
# names no longer used do not stay in Redis for ever. A holder's own token (a resent
# acquire whose reply was lost) gets its fence again.
_ACQUIRE = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
local stamp = run and replid and (run .. ':' .. replid)
local current = redis.call('GET', KEYS[2])
local floor = tonumber(ARGV[3])
if not floor and not (current and stamp and redis.call('GET', KEYS[3]) == stamp) then
    return -1
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    if current and redis.call('GET', KEYS[1]) == ARGV[1] then return tonumber(current) end
    return 0
end
if not floor then
elseif not current then
    local t = redis.call('TIME')
    local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if now_ms > floor then floor = now_ms end
    redis.call('SET', KEYS[2], string.format('%d', floor))
elseif tonumber(current) < floor then
    redis.call('SET', KEYS[2], string.format('%d', floor))
end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if stamp then redis.call('SET', KEYS[3], stamp, 'PX', ARGV[4]) end
return fence
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_SHAS = {source: sha1(source) for source in (_ACQUIRE, _EXTEND, _RELEASE)}
_GLOB = re.compile(r"([*?\[\]\\])")
_KEYS_KEPT = 4096


def unreachable(message: str) -> LockNotAcquiredError:
    """A LockNotAcquiredError that ``wait`` does not retry: locks fail closed at once."""
    error = LockNotAcquiredError(message)
    error.unreachable = True  # type: ignore[attr-defined]
    return error


class AsyncRedisLeaseBackend:
    """Leases in Redis under ``{prefix}:{<tenant id>}:lease:<name>`` (the braces are a
    Cluster hash tag: a tenant's keys share a slot, so the scripts may touch several)."""

    def __init__(self, db: AsyncDatabase):
        self._db = db
        self._prefix = db.settings.redis_key_prefix
        self._scripts: dict[str, Any] = {}  # Script objects, bound to the current client
        self._directs: dict[int, Direct] = {}  # by the client's pool (see _direct)
        self._last: tuple[object, Direct | None] = (None, None)  # (a client, its Direct)
        self._keys_of: dict[tuple[uuid.UUID, str], list[str]] = {}

    @property
    def _redis(self) -> Redis:
        return self._db.redis

    def _direct(self) -> Direct | None:
        """The backend's own connections, made like those of the client's pool; None
        for a cluster client (it routes each command itself)."""
        client = self._db.redis
        last_client, direct = self._last
        if client is not last_client:
            pool = getattr(client, "connection_pool", None)
            direct = None
            if pool is not None:  # (two threads at once: both get the one kept)
                direct = self._directs.get(id(pool)) or self._directs.setdefault(
                    id(pool), Direct(pool)
                )
            self._last = (client, direct)
        return direct

    async def _run(self, source: str, keys: list[str], args: list[Any], *, resend: bool) -> Any:
        """Run a script by its SHA (loaded when Redis does not know it); ``resend``: once
        more on a new connection if a reused one fails on the way."""
        direct = self._direct()
        if direct is not None:
            sha = _SHAS[source]
            return await direct.script(
                self._redis, source, sha, len(keys), *keys, *args, resend=resend
            )
        client = self._redis
        script = self._scripts.get(source)
        if script is None or script.registered_client is not client:
            script = self._scripts[source] = client.register_script(source)
        return await script(keys=keys, args=args)

    def _keys(self, tenant_id: uuid.UUID, name: str) -> list[str]:
        """The lease key, the fence counter and its stamp."""
        keys = self._keys_of.get((tenant_id, name))
        if keys is None:
            if len(self._keys_of) >= _KEYS_KEPT:
                self._keys_of.clear()
            base = f"{self._prefix}:{{{tenant_id}}}"
            keys = [f"{base}:lease:{name}", f"{base}:fence:{name}", f"{base}:fence:~run:{name}"]
            self._keys_of[(tenant_id, name)] = keys
        return keys

    async def acquire(
        self, tenant: str, name: str, token: str, ttl: float
    ) -> tuple[uuid.UUID, int]:
        """The tenant id of the known scope if there is one (no database round trip),
        else of a unit of work that reads the floor at once. A Database opened from an
        access descriptor always enters (the database verifies its token every time:
        expiry, its key retired)."""
        db = self._db
        known = None if db._access is not None else db._known_scopes.get(tenant, "default")
        floor: int | None = None
        if known is None:
            tenant_id, floor = await self._floor(tenant, name)
        else:
            tenant_id = entry_ids(known)[0]
        fence = await self._request(name, self._keys(tenant_id, name), token, ttl, floor)
        if fence == -1:  # Redis may have lost the counter: raise it above the floor
            tenant_id, floor = await self._floor(tenant, name)
            fence = await self._request(name, self._keys(tenant_id, name), token, ttl, floor)
        if fence <= 0:
            raise LockNotAcquiredError(f"lease {name!r} is held by another holder")
        return tenant_id, fence

    async def _floor(self, tenant: str, name: str) -> tuple[uuid.UUID, int]:
        """The tenant id and the database's fence floor for ``name`` (one round trip:
        the entry and the floor, then COMMIT)."""
        async with self._db.unit_of_work(tenant) as uow:
            return uow.scope.tenant_id, await fence_floor(uow.scope, name, last=True)

    async def _request(
        self, name: str, keys: list[str], token: str, ttl: float, floor: int | None
    ) -> int:
        """The acquire script's answer: a fence, 0 (held) or -1 (the floor is needed)."""
        from redis.exceptions import RedisClusterException, RedisError

        args = [token, _ms(ttl), "" if floor is None else floor, FENCE_COUNTER_RETENTION_MS]
        try:
            return int(await self._run(_ACQUIRE, keys, args, resend=True))
        except (RedisError, RedisClusterException, OSError) as exc:
            raise unreachable(
                f"lock service unreachable, lease {name!r} not acquired: {exc}"
            ) from exc

    async def _compare(self, source: str, keys: list[str], args: list[Any], resend: bool) -> bool:
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return bool(await self._run(source, keys, args, resend=resend))
        except (
            RedisError,
            RedisClusterException,
            OSError,
        ) as exc:  # cannot confirm we still hold it: treat it as lost
            raise LeaseLostError(f"lock service unreachable: {exc}") from exc

    async def extend(
        self, tenant: str, tenant_id: uuid.UUID, name: str, token: str, ttl: float
    ) -> bool:
        keys = self._keys(tenant_id, name)[:1]
        return await self._compare(_EXTEND, keys, [token, _ms(ttl)], resend=True)

    async def release(self, tenant: str, tenant_id: uuid.UUID, name: str, token: str) -> bool:
        # (not resent: a release whose reply was lost would then report the lease lost)
        return await self._compare(_RELEASE, self._keys(tenant_id, name)[:1], [token], False)

    async def close(self) -> None:
        """Close the backend's own connections (the client is the database's to close)."""
        directs, self._directs = list(self._directs.values()), {}
        self._last = (None, None)
        for direct in directs:
            await direct.close()

    async def list(self, tenant: str) -> list[LeaseRecord]:
        from redis.exceptions import RedisClusterException, RedisError

        async with self._db.unit_of_work(tenant) as uow:
            tenant_id = uow.scope.tenant_id
        lease_key = self._keys(tenant_id, "")[0]
        try:
            scan = self._redis.scan_iter(match=_GLOB.sub(r"\\\1", lease_key) + "*")
            keys = sorted([key async for key in scan])  # sync: keys = sorted(scan)
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                name = _text(key)[len(lease_key) :]
                pipe.get(key)
                pipe.pttl(key)
                pipe.get(self._keys(tenant_id, name)[1])
            replies = await pipe.execute()
        except (RedisError, RedisClusterException) as exc:
            raise PersistenceError(f"lock service unreachable: {exc}") from exc
        now = utcnow()
        records = []
        for i, key in enumerate(keys):
            holder, pttl, fence = replies[3 * i : 3 * i + 3]
            if holder is None or pttl is None or pttl < 0:
                continue  # expired between the scan and the read
            records.append(
                LeaseRecord.model_construct(
                    tenant_id=tenant_id,
                    name=_text(key)[len(lease_key) :],
                    holder=_text(holder),
                    fence=None if fence is None else int(fence),
                    expires_at=now + timedelta(milliseconds=pttl),
                    remaining=pttl / 1000,
                )
            )
        return records


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
