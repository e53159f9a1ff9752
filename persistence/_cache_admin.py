"""The operator's view of the read cache in Redis (``persistence cache stats|flush``).

Unlike the cache itself, which fails open, these fail loudly: an operator who asked
for a flush must know when Redis did not take it. A flush moves each tenant's epoch
and announces it on the invalidation channel first (every process stops serving the
tenant's entries at once, in-process tiers included), then unlinks the entry keys so
their memory is freed rather than left to expire.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from persistence._cache_channel import message
from persistence._cache_redis import _BUMP, EPOCH_TTL_MS
from persistence.errors import PersistenceError
from persistence.records._base import Record

if TYPE_CHECKING:
    from persistence.database import Database

__all__ = ["TenantCacheUsage", "flush", "usage"]

BATCH = 500  # keys per pipelined round trip
_KEY = re.compile(rb"\{([0-9a-f-]{36})\}:cache:")


class TenantCacheUsage(Record):
    """One tenant's cache in Redis: its epoch and what is stored under it."""

    tenant_id: uuid.UUID
    epoch: int
    entries: int  # live values (each under some epoch; only the current one is served)
    tombstones: int  # versions a commit removed, kept so a slow fill cannot resurrect them
    bytes: int


def _glob(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _pattern(db: Database, tenant_id: uuid.UUID | None) -> str:
    tag = "*" if tenant_id is None else str(tenant_id)
    return f"{_glob(db.settings.redis_key_prefix)}:{{{tag}}}:cache:*"


def _epoch_key(db: Database, tenant_id: uuid.UUID) -> str:
    return f"{db.settings.redis_key_prefix}:{{{tenant_id}}}:cache-epoch"


def _batches(keys: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _redis_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from redis.exceptions import RedisClusterException, RedisError

    try:
        return fn(*args, **kwargs)
    except (RedisError, RedisClusterException, OSError) as exc:
        raise PersistenceError(f"cache service unreachable, {what}: {exc}") from exc


def _tenant_of(key: bytes | str) -> uuid.UUID | None:
    raw = key.encode() if isinstance(key, str) else key
    found = _KEY.search(raw)
    return uuid.UUID(found.group(1).decode()) if found else None


def _tally(db: Database, tenant_id: uuid.UUID | None) -> dict[uuid.UUID, list[int]]:
    client = db.redis
    counts: dict[uuid.UUID, list[int]] = {}
    keys = _redis_call("scan", client.scan_iter, match=_pattern(db, tenant_id), count=BATCH)
    for batch in _batches(_redis_call("scan", list, keys)):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.getrange(key, 0, 0)
            pipe.strlen(key)
        replies = _redis_call("reading entries", pipe.execute)
        for key, kind, size in zip(batch, replies[::2], replies[1::2], strict=True):
            owner = _tenant_of(key)
            if owner is None or not kind:
                continue  # (expired between the scan and the read)
            row = counts.setdefault(owner, [0, 0, 0])
            row[0 if kind == b"E" else 1] += 1
            row[2] += int(size)
    return counts


def usage(db: Database, tenant_id: uuid.UUID | None = None) -> list[TenantCacheUsage]:
    """What Redis holds for ``tenant_id`` (None: every tenant with a key), by tenant."""
    counts = _tally(db, tenant_id)
    if tenant_id is not None:
        counts.setdefault(tenant_id, [0, 0, 0])
    owners = sorted(counts, key=str)
    if not owners:
        return []
    client = db.redis
    epochs = _redis_call("reading epochs", client.mget, [_epoch_key(db, t) for t in owners])
    rows = []
    for owner, epoch in zip(owners, epochs or [], strict=True):
        entries, tombstones, size = counts[owner]
        rows.append(
            TenantCacheUsage(
                tenant_id=owner,
                epoch=int(epoch or 0),
                entries=entries,
                tombstones=tombstones,
                bytes=size,
            )
        )
    return rows


def flush(db: Database, tenant_ids: Iterable[uuid.UUID]) -> dict[str, int]:
    """Make every cached entry of each tenant unservable in every process (an epoch
    bump, announced), then unlink its keys; counts of tenants and keys removed."""
    from persistence._cache_front import _channel

    client, channel = db.redis, _channel(db.settings)
    ttl = max(EPOCH_TTL_MS, 2 * int(db.settings.cache_ttl * 1000))
    bump = client.register_script(_BUMP)
    tenants = sorted(set(tenant_ids), key=str)
    for tenant_id in tenants:
        note = message(tenant_id, "*", 0)
        _redis_call("flush", bump, keys=[_epoch_key(db, tenant_id)], args=[ttl, channel, note])
        db._known_scopes.forget_tenant(str(tenant_id))
        if db._cache is not None:
            db._cache.tenant_changed(tenant_id)
    removed = 0
    for tenant_id in tenants:
        keys = _redis_call("scan", client.scan_iter, match=_pattern(db, tenant_id), count=BATCH)
        for batch in _batches(_redis_call("scan", list, keys)):
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.unlink(key)
            removed += sum(int(n) for n in _redis_call("flush", pipe.execute))
    return {"tenants": len(tenants), "keys_removed": removed}


def cached_tenants(db: Database) -> set[uuid.UUID]:
    """Every tenant with a cache key in Redis (those of deleted tenants included)."""
    return set(_tally(db, None))
