"""The operator's view of the read cache in Redis (``persistence cache stats|flush``).

Unlike the cache itself, which fails open, these fail loudly: an operator who asked
for a flush must know when Redis did not take it. A flush moves each tenant's epoch
and announces it on the invalidation channel first (the path every tenant change
takes, ``Database._tenant_changed``: every process stops serving the tenant's entries
at once, in-process tiers included), then unlinks the entry keys so their memory is
freed rather than left to expire.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from persistence._cache_redis import ENTRY_KEY, EPOCH_KEY, tenant_tag
from persistence.errors import PersistenceError
from persistence.records._base import Record

if TYPE_CHECKING:
    from persistence.database import Database

__all__ = ["TenantCacheUsage", "cached_tenants", "flush", "usage"]

BATCH = 500  # keys per pipelined round trip
_KEY = re.compile(rb"\{([0-9a-f-]{36})\}" + re.escape(ENTRY_KEY.encode()))


class TenantCacheUsage(Record):
    """One tenant's cache in Redis: its epoch and what is stored under it."""

    tenant_id: uuid.UUID
    epoch: int
    entries: int  # live values (each under some epoch; only the current one is served)
    tombstones: int  # versions a commit removed, kept so a slow fill cannot resurrect them
    bytes: int


def _unreachable(what: str, exc: Exception) -> PersistenceError:
    return PersistenceError(f"cache service unreachable, {what}: {exc}")


def _redis_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from redis.exceptions import RedisClusterException, RedisError

    try:
        return fn(*args, **kwargs)
    except (RedisError, RedisClusterException, OSError) as exc:
        raise _unreachable(what, exc) from exc


def _key_batches(db: Database, tenant_id: uuid.UUID | None) -> Iterator[list[Any]]:
    """The entry keys of ``tenant_id`` (None: of every tenant), ``BATCH`` at a time, as
    SCAN finds them (on every node of a cluster)."""
    from redis.exceptions import RedisClusterException, RedisError

    prefix = re.sub(r"([*?\[\]\\])", r"\\\1", db.settings.redis_key_prefix)  # (a glob)
    tag = tenant_tag(prefix, "*" if tenant_id is None else tenant_id)
    batch: list[Any] = []
    try:
        for key in db.redis.scan_iter(match=f"{tag}{ENTRY_KEY}*", count=BATCH):
            batch.append(key)
            if len(batch) == BATCH:
                yield batch
                batch = []
    except (RedisError, RedisClusterException, OSError) as exc:
        raise _unreachable("scan", exc) from exc
    if batch:
        yield batch


def _tenant_of(key: bytes | str) -> uuid.UUID | None:
    raw = key.encode() if isinstance(key, str) else key
    found = _KEY.search(raw)
    return uuid.UUID(found.group(1).decode()) if found else None


def _tally(db: Database, tenant_id: uuid.UUID | None) -> dict[uuid.UUID, list[int]]:
    counts: dict[uuid.UUID, list[int]] = {}
    for batch in _key_batches(db, tenant_id):
        pipe = db.redis.pipeline(transaction=False)
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
    prefix = db.settings.redis_key_prefix
    epoch_keys = [tenant_tag(prefix, owner) + EPOCH_KEY for owner in owners]
    epochs = _redis_call("reading epochs", db.redis.mget, epoch_keys)
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
    tenants = sorted(set(tenant_ids), key=str)
    _redis_call("flush", db.redis.ping)  # (a dead Redis named with its own error)
    for tenant_id in tenants:
        if not db._tenant_changed(tenant_id):
            raise PersistenceError(
                f"cache service unreachable, flush: the epoch of tenant {tenant_id} did not move"
            )
    removed = 0
    for tenant_id in tenants:
        for batch in _key_batches(db, tenant_id):
            pipe = db.redis.pipeline(transaction=False)
            for key in batch:
                pipe.unlink(key)
            removed += sum(int(n) for n in _redis_call("flush", pipe.execute))
    return {"tenants": len(tenants), "keys_removed": removed}


def cached_tenants(db: Database) -> set[uuid.UUID]:
    """Every tenant with a cache key in Redis (those of deleted tenants included)."""
    owners = (_tenant_of(key) for batch in _key_batches(db, None) for key in batch)
    return {owner for owner in owners if owner is not None}
