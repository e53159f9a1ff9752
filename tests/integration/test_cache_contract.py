"""The read cache's contract (docs/cache.md), line by line, on PostgreSQL with Redis,
through both APIs: state loads (latest) with ``cache='shared'`` and ``'local'``."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from persistence import Database
from persistence.errors import NotFoundError, TenantSuspendedError
from tests.conftest import new_tenant
from tests.fixtures.bridge import is_async, unbridged
from tests.fixtures.cache import eventually
from tests.fixtures.services import PostgresTarget

Opener = Callable[..., Database]


def _load(db: Database, tenant: str, sid: str = "doc") -> Any:
    with db.unit_of_work(tenant) as uow:
        found = uow.states.load(sid)
        return None if found is None else found.state


def _save(db: Database, tenant: str, value: Any, sid: str = "doc") -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.states.save(sid, value).version)


def _stats(db: Database) -> Any:
    return unbridged(db).cache.stats()


def test_read_your_writes_from_the_cache(pg_db: Database, cached: Opener) -> None:
    tenant, db = new_tenant(pg_db), cached()
    for n in range(3):
        _save(db, tenant, {"n": n})
        before = _stats(db).served_local
        assert _load(db, tenant) == {"n": n}  # at once, from the cache
        assert _stats(db).served_local == before + 1


def test_a_local_cache_serves_its_own_writes_too(
    pg_db: Database, open_database: Opener, postgres: PostgresTarget
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, cache="local") as db:
        _save(db, tenant, {"n": 1})
        assert _load(db, tenant) == {"n": 1}
        assert _stats(db).served_local == 1 and _stats(db).shared is None


def test_reads_are_monotonic(pg_db: Database, cached: Opener, redis_url: str, prefix: str) -> None:
    """Redis handing back an older version than this process has seen (a lagging
    replica, a restore) is refused: the read goes to the database."""
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    client = redis.Redis.from_url(redis_url)
    (key,) = list(client.scan_iter(match=f"{prefix}:*:cache:state:*"))
    old = client.get(key)  # version 1's entry
    _save(db, tenant, {"n": 2})
    assert _load(db, tenant) == {"n": 2}
    client.set(key, old)  # Redis goes back to version 1
    unbridged(db).cache.local.clear()  # (the in-process entry gone: Redis is asked)
    refused = _stats(db).refused_stale
    assert _load(db, tenant) == {"n": 2}
    assert _stats(db).refused_stale == refused + 1


def test_a_commit_elsewhere_is_seen_within_the_bound(pg_db: Database, cached: Opener) -> None:
    tenant = new_tenant(pg_db)
    writer, reader = cached(), cached()
    _save(writer, tenant, {"n": 0})
    assert _load(reader, tenant) == {"n": 0}  # cached in the reader's own tier
    for n in range(1, 6):
        _save(writer, tenant, {"n": n})
        # the channel carries the invalidation; the reader then reads Redis
        assert eventually(lambda n=n: _load(reader, tenant) == {"n": n}, within=2.0)


def test_a_slow_reader_never_overwrites_a_newer_value(pg_db: Database, cached: Opener) -> None:
    """The reader read version 1 from the database; the writer committed version 2
    before the reader's fill: the fill is refused in both tiers."""
    tenant = new_tenant(pg_db)
    writer, reader, fresh = cached(), cached(), cached()
    _save(writer, tenant, {"n": 1})
    _drop_redis_entries(writer)  # (the writer filled Redis with version 1: a miss now)
    reached, release = _delay_fills(reader)
    done: list[Any] = []
    slow = threading.Thread(target=lambda: done.append(_load(reader, tenant)))
    slow.start()
    assert reached.wait(10)  # the reader has version 1 from the database, not yet filled
    received = _stats(reader).invalidations_received
    _save(writer, tenant, {"n": 2})
    assert eventually(lambda: _stats(reader).invalidations_received > received)
    release.set()
    slow.join(10)
    assert done == [{"n": 1}]  # what it read is what it returns: it began before the write
    assert _load(fresh, tenant) == {"n": 2}  # Redis kept the writer's version
    assert _load(reader, tenant) == {"n": 2}  # and so did the reader's own tier


def test_a_slow_fill_that_reaches_redis_after_the_write_is_refused_there(
    pg_db: Database, cached: Opener
) -> None:
    """As above, but the reader has not heard of the write (its channel is down): its
    fill of version 1 reaches Redis after the writer's version 2, and Redis refuses it
    (the versioned compare-and-set), so no other process is served version 1."""
    tenant = new_tenant(pg_db)
    writer, reader, fresh = cached(), cached(), cached()
    _save(writer, tenant, {"n": 1})
    _drop_redis_entries(writer)
    unbridged(reader).cache.channel.close()  # it hears of nothing now
    reached, release = _delay_fills(reader)
    slow = threading.Thread(target=lambda: _load(reader, tenant))
    slow.start()
    assert reached.wait(10)
    _save(writer, tenant, {"n": 2})
    release.set()
    slow.join(10)
    refused = _stats(reader).shared.refused_fills
    assert refused == 1  # the stale fill, refused by Redis
    assert _load(fresh, tenant) == {"n": 2}


def _drop_redis_entries(db: Database) -> None:
    tier = unbridged(db).cache.shared
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(_url_of(tier)))
    for key in client.scan_iter(match=f"{tier._prefix}:*:cache:*"):
        client.delete(key)


def _url_of(tier: Any) -> str:
    kwargs = tier._client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def _delay_fills(db: Database) -> tuple[threading.Event, threading.Event]:
    """Hold every fill of ``db``'s cache until the second event is set (the first says
    a fill is waiting)."""
    cache = unbridged(db).cache
    original, reached, release = cache.fill, threading.Event(), threading.Event()
    if is_async(db):

        async def slow_async(*args: Any, **kwargs: Any) -> Any:
            reached.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
            return await original(*args, **kwargs)

        cache.fill = slow_async
    else:

        def slow(*args: Any, **kwargs: Any) -> Any:
            reached.set()
            release.wait(10)
            return original(*args, **kwargs)

        cache.fill = slow
    return reached, release


def test_a_unit_of_work_reads_its_own_write_not_the_cache(pg_db: Database, cached: Opener) -> None:
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    with db.unit_of_work(tenant) as uow:
        uow.states.save("doc", {"n": 2})
        assert uow.states.load("doc").state == {"n": 2}  # uncommitted, from PostgreSQL
    assert _load(db, tenant) == {"n": 2}


def test_a_rollback_neither_fills_nor_invalidates(
    pg_db: Database, cached: Opener, redis_url: str, prefix: str
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    client = redis.Redis.from_url(redis_url)
    before, local = _redis_entries(client, prefix), _stats(db).local
    with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:
        uow.states.save("doc", {"n": 2})
        raise RuntimeError("rolled back")
    assert _redis_entries(client, prefix) == before
    after = _stats(db).local
    assert (after.fills, after.invalidations) == (local.fills, local.invalidations)
    assert _load(db, tenant) == {"n": 1}


def _redis_entries(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    return {key: client.get(key) for key in client.scan_iter(match=f"{prefix}:*:cache:*")}


def test_a_read_only_unit_of_work_reads_its_snapshot(pg_db: Database, cached: Opener) -> None:
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    with db.unit_of_work(tenant, read_only=True) as snapshot:
        assert snapshot.states.load("doc").state == {"n": 1}
        _save(db, tenant, {"n": 2})  # in the cache now
        assert snapshot.states.load("doc").state == {"n": 1}  # its snapshot, not the cache
    assert _load(db, tenant) == {"n": 2}


def test_keys_carry_the_tenant_in_a_hash_tag(
    pg_db: Database, cached: Opener, redis_url: str, prefix: str
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    for sid in ("a", "b", "c"):
        _save(db, tenant, {"sid": sid}, sid=sid)
    with db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}:*")]
    assert len(keys) >= 3
    for key in keys:
        assert re.fullmatch(rf"{re.escape(prefix)}:\{{{tenant_id}\}}:cache(-epoch|:.+)", key)
    assert len({key_slot(key.encode()) for key in keys}) == 1  # one Cluster slot


def test_equal_ids_in_two_tenants_never_share_an_entry(pg_db: Database, cached: Opener) -> None:
    first, second, db = new_tenant(pg_db), new_tenant(pg_db), cached()
    _save(db, first, {"tenant": 1})
    _save(db, second, {"tenant": 2})  # the same state id, workspace slug and version
    for _ in range(2):
        assert _load(db, first) == {"tenant": 1}
        assert _load(db, second) == {"tenant": 2}


def test_suspending_a_tenant_makes_its_entries_unservable_everywhere(
    pg_db: Database,
    cached: Opener,
    postgres: PostgresTarget,
    open_database: Opener,
    redis_url: str,
    prefix: str,
) -> None:
    tenant = new_tenant(pg_db)
    reader, other = cached(), cached()
    _save(reader, tenant, {"n": 1})
    assert _load(reader, tenant) == {"n": 1} and _load(other, tenant) == {"n": 1}
    # an operator's process with no cache of its own: it announces the change in Redis
    operator = open_database(
        postgres.owner_url,
        owner_url=postgres.owner_url,
        redis_url=redis_url,
        redis_key_prefix=prefix,
    )
    with operator, operator.admin() as admin:
        admin.tenants.suspend(tenant)

    def refused(db: Database) -> bool:
        try:
            _load(db, tenant)
        except TenantSuspendedError:
            return True
        return False

    assert eventually(lambda: refused(reader), within=2.0)
    assert eventually(lambda: refused(other), within=2.0)
    with operator, operator.admin() as admin:
        admin.tenants.resume(tenant)
    assert eventually(lambda: not refused(reader), within=2.0)
    assert _load(reader, tenant) == {"n": 1}
    # an operator whose own cache is in-process only still tells the others
    local = open_database(
        postgres.owner_url,
        owner_url=postgres.owner_url,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        cache="local",
    )
    with local, local.admin() as admin:
        admin.tenants.suspend(tenant)
    assert eventually(lambda: refused(reader), within=2.0)
    assert eventually(lambda: refused(other), within=2.0)


def test_a_corrupted_entry_is_never_served(
    pg_db: Database, cached: Opener, redis_url: str, prefix: str
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    client = redis.Redis.from_url(redis_url)
    (key,) = list(client.scan_iter(match=f"{prefix}:*:cache:state:*"))
    stored = client.get(key)
    assert stored is not None and stored.endswith(b'{"n":1}')
    client.set(key, stored[: -len(b'{"n":1}')] + b'{"n":6}')  # the checksum does not match
    unbridged(db).cache.local.clear()
    assert _load(db, tenant) == {"n": 1}  # verified on the way out, read again
    assert _load(cached(), tenant) == {"n": 1}


# -- stores: get and `in` ------------------------------------------------------------------


def test_store_reads_your_writes_and_in_from_the_cache(pg_db: Database, cached: Opener) -> None:
    tenant, db = new_tenant(pg_db), cached()
    store = db.store(tenant, "notes")
    store["k"] = {"v": 1}
    before = _stats(db).served_local
    assert store["k"] == {"v": 1} and "k" in store
    assert _stats(db).served_local == before + 2
    store["k"] = {"v": 2}
    assert store["k"] == {"v": 2}


def test_store_deletes_and_clears_reach_other_processes(pg_db: Database, cached: Opener) -> None:
    tenant = new_tenant(pg_db)
    writer, reader = cached(), cached()
    mine, theirs = writer.store(tenant, "notes"), reader.store(tenant, "notes")
    mine.update({"a": 1, "b": 2})
    assert theirs["a"] == 1 and theirs["b"] == 2  # cached in the reader's tier
    del mine["a"]
    assert eventually(lambda: "a" not in theirs, within=2.0)
    mine.clear()
    assert eventually(lambda: "b" not in theirs, within=2.0)
    mine["b"] = 3
    assert eventually(lambda: theirs.get("b") == 3, within=2.0)


def test_store_reads_inside_a_locked_transaction_go_to_the_database(
    pg_db: Database, cached: Opener
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    store = db.store(tenant, "counter")
    store["n"] = 1
    assert store["n"] == 1  # (cached)
    served = _stats(db).served_local
    with store.transaction(lock=True) as locked:
        locked["n"] = locked["n"] + 1  # read under the lock, from PostgreSQL
        assert locked["n"] == 2  # its own uncommitted write
    assert _stats(db).served_local == served
    assert store["n"] == 2


def test_a_store_write_in_a_unit_of_work_is_read_back_uncommitted(
    pg_db: Database, cached: Opener
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    db.store(tenant, "notes")["k"] = "old"
    with db.unit_of_work(tenant) as uow:
        notes = uow.store("notes")
        notes["k"] = "new"
        assert notes["k"] == "new" and "k" in notes
    with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:
        uow.store("notes")["k"] = "rolled back"
        raise RuntimeError
    assert db.store(tenant, "notes")["k"] == "new"


# -- workflows: get, latest and by revision ----------------------------------------------

SOURCE = "def run():\n    return {n}\n"


def _workflow(db: Database, tenant: str, revision: int | None = None) -> Any:
    with db.unit_of_work(tenant) as uow:
        return uow.workflows.get("flow", revision)


def test_workflow_gets_read_your_writes_from_the_cache(pg_db: Database, cached: Opener) -> None:
    tenant, db = new_tenant(pg_db), cached()
    with db.unit_of_work(tenant) as uow:
        uow.workflows.save("flow", SOURCE.format(n=1))
    before = _stats(db).served_local
    assert _workflow(db, tenant).revision == 1
    assert _stats(db).served_local == before + 1
    with db.unit_of_work(tenant) as uow:
        uow.workflows.save("flow", SOURCE.format(n=2))
        assert uow.workflows.get("flow").revision == 2  # its own write, from PostgreSQL
    assert _workflow(db, tenant).source == SOURCE.format(n=2)
    assert _workflow(db, tenant, 1).source == SOURCE.format(n=1)  # by revision: filled
    served = _stats(db).served_local
    assert _workflow(db, tenant, 1).revision == 1
    assert _stats(db).served_local == served + 1


def test_a_workflow_deleted_and_created_again_is_never_served_old(
    pg_db: Database, cached: Opener
) -> None:
    tenant = new_tenant(pg_db)
    writer, reader = cached(), cached()
    with writer.unit_of_work(tenant) as uow:
        uow.workflows.save("flow", SOURCE.format(n=1))
        uow.workflows.save("flow", SOURCE.format(n=2))
    assert _workflow(reader, tenant).revision == 2  # cached in the reader
    with writer.unit_of_work(tenant) as uow:
        uow.workflows.delete("flow")
        uow.workflows.save("flow", SOURCE.format(n=3))  # revision 1 again
    assert eventually(lambda: _workflow(reader, tenant).source == SOURCE.format(n=3), 2.0)
    assert _workflow(reader, tenant).revision == 1


# -- artifacts: load, up to cache_max_artifact_bytes -----------------------------------------


def _artifact(db: Database, tenant: str, name: str = "notes.txt") -> Any:
    with db.unit_of_work(tenant) as uow:
        return uow.artifacts.load(name)


def test_small_artifacts_load_from_the_cache_large_ones_never(
    pg_db: Database, cached: Opener
) -> None:
    tenant, db = new_tenant(pg_db), cached(cache_max_artifact_bytes=1024)
    with db.unit_of_work(tenant) as uow:
        uow.artifacts.save("notes.txt", "small")
        uow.artifacts.save("big.bin", b"x" * 4096)
    served = _stats(db).served_local
    assert _artifact(db, tenant) == "small"
    assert _stats(db).served_local == served + 1
    assert _artifact(db, tenant, "big.bin") == b"x" * 4096  # over the size: the database
    assert _artifact(db, tenant, "big.bin") == b"x" * 4096
    assert _stats(db).served_local == served + 1


def test_artifact_saves_and_deletes_reach_other_processes(pg_db: Database, cached: Opener) -> None:
    tenant = new_tenant(pg_db)
    writer, reader = cached(), cached()
    with writer.unit_of_work(tenant) as uow:
        uow.artifacts.save("notes.txt", "one")
    assert _artifact(reader, tenant) == "one"
    with writer.unit_of_work(tenant) as uow:
        uow.artifacts.save("notes.txt", "two")
    assert eventually(lambda: _artifact(reader, tenant) == "two", within=2.0)
    with writer.unit_of_work(tenant) as uow:
        uow.artifacts.delete("notes.txt")

    def gone() -> bool:
        with reader.unit_of_work(tenant) as uow:
            return not uow.artifacts.exists("notes.txt") and _missing(uow)

    assert eventually(gone, within=2.0)


def _missing(uow: Any) -> bool:
    try:
        uow.artifacts.load("notes.txt")
    except NotFoundError:
        return True
    return False


def test_an_entry_read_again_after_its_age_is_served_again(
    pg_db: Database, open_database: Opener, postgres: PostgresTarget
) -> None:
    """``cache='local'``: an entry older than ``cache_max_stale`` is not served; the read
    that goes to the database renews it, and the next read is served from memory."""
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, cache="local", cache_max_stale=0.2) as db:
        _save(db, tenant, {"n": 1})
        assert _load(db, tenant) == {"n": 1} and _stats(db).served_local == 1
        time.sleep(0.3)
        assert _load(db, tenant) == {"n": 1}  # too old: from PostgreSQL, and renewed
        assert _stats(db).served_local == 1
        assert _load(db, tenant) == {"n": 1}
        assert _stats(db).served_local == 2
