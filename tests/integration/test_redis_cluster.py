"""Leases and the read cache on a 3-node Redis Cluster the tests start themselves
(``tests.fixtures.redis_cluster``), through redis-py's cluster client
(``redis_cluster=True``), on both APIs: no CROSSSLOT error, and a tenant's keys share
one slot.

The cache fails open (a Redis error is a miss), so its tests also assert that the
Redis tier counted no error and that the counters the cluster should have moved did.
The tenants of the pub/sub tests live on a node other than the one the invalidation
channel subscribes to (the first), so a message must cross the cluster bus.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from persistence import Database
from persistence.errors import (
    LeaseLostError,
    LockNotAcquiredError,
    StaleFenceError,
    TenantSuspendedError,
)
from persistence.locks import list_leases
from persistence.locks_async import list_leases as list_leases_async
from tests.conftest import unique_slug
from tests.fixtures.bridge import call, is_async, unbridged
from tests.fixtures.cache import eventually
from tests.fixtures.redis_cluster import RedisClusterNodes
from tests.fixtures.services import PostgresTarget, free_port

Opener = Callable[..., Database]

_CLIENTS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)


@pytest.fixture
def prefix() -> str:
    return f"ptest-cluster-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clustered(
    open_database: Opener,
    postgres: PostgresTarget,
    redis_cluster: RedisClusterNodes,
    prefix: str,
) -> Iterator[Opener]:
    """``clustered(owner=False, **settings)``: a database on the cluster (its first node's
    URL, ``redis_cluster=True``, the test's key prefix), entered; closed after the test
    (a failing close fails it). ``owner=True``: on the owner URL, for administration."""
    opened: list[Database] = []

    def open_clustered(*, owner: bool = False, **settings: Any) -> Database:
        url = postgres.owner_url if owner else postgres.runtime_url
        db = open_database(
            url,
            owner_url=postgres.owner_url,
            redis_url=redis_cluster.url,
            redis_cluster=True,
            redis_key_prefix=prefix,
            **settings,
        )
        db.__enter__()
        opened.append(db)
        assert isinstance(unbridged(db).redis, _CLIENTS)  # the cluster client, not a node's
        cache = unbridged(db).cache
        if cache is not None and cache.channel is not None:
            assert cache.channel.wait_live(5)
        return db

    yield open_clustered
    for db in reversed(opened):
        db.__exit__(None, None, None)


def _tenant(db: Database, cluster: RedisClusterNodes, *, first_node: bool) -> tuple[str, str]:
    """A new tenant (slug, id) whose slot the first node holds (``first_node``), or one of
    the others (the invalidation channel subscribes on the first)."""
    with cluster.client() as client:
        for _ in range(50):
            slug = unique_slug("c")
            with db.admin() as admin:
                admin.tenants.create(slug)
            with db.unit_of_work(slug) as uow:
                tenant_id = str(uow.tenant.id)
            node = client.get_node_from_key(f"{{{tenant_id}}}")
            if (node.port == cluster.ports[0]) == first_node:
                return slug, tenant_id
    raise AssertionError(f"no tenant landed {'on' if first_node else 'off'} the first node")


def _load(db: Database, tenant: str, sid: str = "doc") -> Any:
    with db.unit_of_work(tenant) as uow:
        found = uow.states.load(sid)
        return None if found is None else found.state


def _save(db: Database, tenant: str, value: Any, sid: str = "doc") -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.states.save(sid, value).version)


def _stats(db: Database) -> Any:
    return unbridged(db).cache.stats()


def _no_redis_errors(*dbs: Database) -> None:
    """The Redis tier swallows errors (a CROSSSLOT reply, a MOVED it could not follow):
    none may have happened, and nothing may have been skipped by its breaker."""
    for db in dbs:
        shared = _stats(db).shared
        assert (shared.errors, shared.skipped) == (0, 0), shared


def _leases(db: Database, tenant: str) -> list[Any]:
    if is_async(db):
        return call(list_leases_async, db, tenant)  # type: ignore[no-any-return]
    return list_leases(db, tenant)


# -- leases ----------------------------------------------------------------------------------


def test_leases_acquire_extend_release_and_fence_on_the_cluster(
    clustered: Opener, redis_cluster: RedisClusterNodes, prefix: str
) -> None:
    db, other = clustered(), clustered()
    tenant, tenant_id = _tenant(db, redis_cluster, first_node=False)
    lease_key = f"{prefix}:{{{tenant_id}}}:lease:job"
    client = redis_cluster.client()
    try:
        first = db.lease(tenant=tenant, name="job", ttl=5)
        assert first.fence >= 1 and first.held
        assert client.get(lease_key) == first.token.encode()  # on the node of its slot
        with pytest.raises(LockNotAcquiredError, match="held by another holder"):
            other.lease(tenant=tenant, name="job")  # (not "unreachable": no Redis error)
        with pytest.raises(LockNotAcquiredError, match="held by another holder"):
            db.lease(tenant=tenant, name="job")
        assert 0 < client.pttl(lease_key) <= 5000
        first.extend(60)
        assert client.pttl(lease_key) > 5000  # the script reached the node
        [listed] = _leases(db, tenant)  # a scan of every node, then a pipeline
        assert (listed.name, listed.holder, listed.fence) == ("job", first.token, first.fence)

        store = db.store(tenant=tenant, name="s")
        store.fenced(first)["k"] = "first"
        first.release()
        assert client.exists(lease_key) == 0
        assert _leases(db, tenant) == []
        with pytest.raises(LeaseLostError):
            first.extend()

        second = other.lease(tenant=tenant, name="job", ttl=5)
        assert second.fence > first.fence
        other.store(tenant=tenant, name="s").fenced(second)["k"] = "second"
        with pytest.raises(StaleFenceError):
            store.fenced(first)["k"] = "stale"  # the holder before: refused
        assert store["k"] == "second"
        second.release()
        third = db.lease(tenant=tenant, name="job", ttl=5)
        assert third.fence == second.fence + 1  # the counter on the cluster goes on
        third.release()
    finally:
        client.close()


# -- the read cache --------------------------------------------------------------------------


def test_read_your_writes_through_the_cache_on_the_cluster(
    clustered: Opener, redis_cluster: RedisClusterNodes, prefix: str
) -> None:
    db = clustered(cache="shared")
    tenant, tenant_id = _tenant(db, redis_cluster, first_node=False)
    for n in range(3):
        assert _save(db, tenant, {"n": n}) == n + 1
        before = _stats(db).served_local
        assert _load(db, tenant) == {"n": n}
        assert _stats(db).served_local == before + 1
    assert _stats(db).shared.invalidations >= 3  # each commit's write script ran
    [entry] = redis_cluster.keys(f"{prefix}:{{{tenant_id}}}:cache:state:*")
    with redis_cluster.client() as client:
        assert client.get(entry).endswith(b'{"n":2}')
    _no_redis_errors(db)


def test_a_commit_is_seen_by_another_cache_within_two_seconds(
    clustered: Opener, redis_cluster: RedisClusterNodes
) -> None:
    """The reader keeps its in-process entries for 60 s without word from the channel,
    so only an invalidation (published on the tenant's node, heard on the first node)
    can make it read the new version in time."""
    writer, reader = clustered(cache="shared"), clustered(cache="shared", cache_max_stale=60)
    tenant, _ = _tenant(writer, redis_cluster, first_node=False)
    _save(writer, tenant, {"n": 0})
    assert _load(reader, tenant) == {"n": 0}
    for n in range(1, 4):
        received = _stats(reader).invalidations_received
        _save(writer, tenant, {"n": n})
        assert eventually(lambda n=n: _load(reader, tenant) == {"n": n}, within=2.0)
        assert _stats(reader).invalidations_received > received
    _no_redis_errors(writer, reader)


def test_the_redis_tier_serves_when_the_local_tier_is_off(
    clustered: Opener, redis_cluster: RedisClusterNodes, pg_db: Database
) -> None:
    reader = clustered(cache="shared", cache_local_bytes=0)
    tenant, _ = _tenant(reader, redis_cluster, first_node=False)
    _save(pg_db, tenant, {"n": 1})  # (no cache there: nothing in Redis yet)
    assert _load(reader, tenant) == {"n": 1}  # a miss (MGET), then a fill (script)
    shared = _stats(reader).shared
    assert (shared.misses, shared.fills, shared.hits) == (1, 1, 0)
    for n in range(1, 4):
        assert _load(reader, tenant) == {"n": 1}
        assert _stats(reader).served_shared == n
    assert _stats(reader).served_local == 0 and _stats(reader).shared.hits == 3
    writer = clustered(cache="shared")
    _save(writer, tenant, {"n": 2})  # replaces the entry in Redis before it returns
    assert _load(reader, tenant) == {"n": 2}
    assert _stats(reader).served_shared == 4
    _no_redis_errors(reader, writer)


def test_suspending_a_tenant_is_refused_everywhere_within_two_seconds(
    clustered: Opener, redis_cluster: RedisClusterNodes, prefix: str
) -> None:
    reader = clustered(cache="shared", cache_max_stale=60)
    other = clustered(cache="shared", cache_max_stale=60, cache_local_bytes=0)
    tenant, tenant_id = _tenant(reader, redis_cluster, first_node=False)
    _save(reader, tenant, {"n": 1})
    assert _load(reader, tenant) == {"n": 1} and _load(other, tenant) == {"n": 1}
    served = (_stats(reader).served_local, _stats(other).served_shared)
    assert _load(reader, tenant) == {"n": 1} and _load(other, tenant) == {"n": 1}
    assert (_stats(reader).served_local, _stats(other).served_shared) == (
        served[0] + 1,
        served[1] + 1,
    )  # both serve from the cache: the database is not asked for the tenant
    admin_db = clustered(owner=True)  # an operator: no cache of its own, the same cluster
    epoch = f"{prefix}:{{{tenant_id}}}:cache-epoch"
    client = redis_cluster.client()
    try:
        before = int(client.get(epoch) or 0)
        with admin_db.admin() as admin:
            admin.tenants.suspend(tenant)
        assert int(client.get(epoch) or 0) == before + 1  # the announce script ran

        def refused(db: Database) -> bool:
            try:
                _load(db, tenant)
            except TenantSuspendedError:
                return True
            return False

        assert eventually(lambda: refused(reader), within=2.0)
        assert eventually(lambda: refused(other), within=2.0)
        with admin_db.admin() as admin:
            admin.tenants.resume(tenant)
        assert int(client.get(epoch) or 0) == before + 2
        assert eventually(lambda: not refused(reader), within=2.0)
        assert eventually(lambda: not refused(other), within=2.0)
        assert _load(reader, tenant) == {"n": 1}
    finally:
        client.close()
    _no_redis_errors(reader, other)


def test_store_get_and_in_through_the_cache_on_the_cluster(
    clustered: Opener, redis_cluster: RedisClusterNodes
) -> None:
    writer = clustered(cache="shared")
    reader = clustered(cache="shared", cache_max_stale=60)
    remote = clustered(cache="shared", cache_local_bytes=0)
    tenant, _ = _tenant(writer, redis_cluster, first_node=False)
    store = writer.store(tenant, "notes")
    store["k"] = {"v": 1}
    before = _stats(writer).served_local
    assert store["k"] == {"v": 1} and "k" in store
    assert _stats(writer).served_local == before + 2
    assert remote.store(tenant, "notes")["k"] == {"v": 1}
    assert _stats(remote).served_shared == 1  # the writer's entry, from the cluster
    theirs = reader.store(tenant, "notes")
    assert theirs["k"] == {"v": 1}
    store["k"] = {"v": 2}
    assert eventually(lambda: theirs.get("k") == {"v": 2}, within=2.0)
    del store["k"]
    assert eventually(lambda: "k" not in theirs, within=2.0)
    assert "k" not in remote.store(tenant, "notes")
    _no_redis_errors(writer, reader, remote)


# -- keys ------------------------------------------------------------------------------------


def test_every_key_of_a_tenant_maps_to_one_slot(
    clustered: Opener, redis_cluster: RedisClusterNodes, prefix: str
) -> None:
    db = clustered(cache="shared")
    admin_db = clustered(owner=True)
    tenants = [
        _tenant(db, redis_cluster, first_node=True),
        _tenant(db, redis_cluster, first_node=False),
    ]
    held = []
    for tenant, _ in tenants:
        for sid in ("a", "b", "c"):
            _save(db, tenant, {"sid": sid}, sid=sid)
        db.store(tenant, "notes")["k"] = 1
        held += [db.lease(tenant=tenant, name="job"), db.lease(tenant=tenant, name="other")]
        with admin_db.admin() as admin:  # the tenant's cache epoch moves
            admin.tenants.suspend(tenant)
            admin.tenants.resume(tenant)

    every = redis_cluster.keys(f"{prefix}:*")  # key: the port of the node holding it
    client = redis_cluster.client()
    try:
        assert sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*")) == sorted(every)
    finally:
        client.close()
    tagged = re.compile(re.escape(prefix) + r":\{([0-9a-f-]{36})\}:(.+)")
    by_tenant: dict[str, list[str]] = {}
    for key in every:
        found = tagged.fullmatch(key)
        assert found, key  # every key carries a tenant in its hash tag
        by_tenant.setdefault(found.group(1), []).append(found.group(2))
    assert sorted(by_tenant) == sorted(tenant_id for _, tenant_id in tenants)
    for tenant_id, rests in by_tenant.items():
        kinds = {re.sub(r":.*", "", rest) for rest in rests}
        assert kinds == {"lease", "fence", "cache-epoch", "cache"}, rests
        # leases, fence counters and their stamps, epoch, states, store key
        assert len(rests) == 2 + 2 + 2 + 1 + 3 + 1
        keys = [f"{prefix}:{{{tenant_id}}}:{rest}" for rest in rests]
        assert len({key_slot(key.encode()) for key in keys}) == 1
        assert len({every[key] for key in keys}) == 1  # and so one node holds them all
    assert len({every[key] for key in every}) == 2  # the two tenants: two nodes
    for lease in held:
        lease.release()
    _no_redis_errors(db)


# -- an unreachable cluster --------------------------------------------------------------------


def _unreachable(open_database: Opener, postgres: PostgresTarget, **settings: Any) -> Database:
    """A database whose cluster cannot be reached at all (nothing listens on the port its
    ``redis_url`` names), as when a process starts while its Redis node is down."""
    return open_database(
        postgres.runtime_url,
        owner_url=postgres.owner_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_cluster=True,
        redis_socket_timeout=0.5,
        redis_key_prefix=f"ptest-cluster-{uuid.uuid4().hex[:10]}",
        **settings,
    )


def test_leases_fail_closed_when_the_cluster_is_unreachable(
    open_database: Opener, postgres: PostgresTarget, pg_db: Database
) -> None:
    """As on one Redis (tests/integration/test_leases_redis.py): LockNotAcquiredError,
    at once, not the cluster client's own exception."""
    tenant = unique_slug("c")
    with pg_db.admin() as admin:
        admin.tenants.create(tenant)
    with _unreachable(open_database, postgres) as db:
        started = time.monotonic()
        with pytest.raises(LockNotAcquiredError, match="unreachable"):
            db.lease(tenant=tenant, name="job", wait=30)
        assert time.monotonic() - started < 5


def test_the_cache_fails_open_when_the_cluster_is_unreachable(
    open_database: Opener, postgres: PostgresTarget, pg_db: Database
) -> None:
    """docs/cache.md: Redis down never fails a read or a write; the Redis tier counts
    the error and the read goes to the database."""
    tenant = unique_slug("c")
    with pg_db.admin() as admin:
        admin.tenants.create(tenant)
    with _unreachable(open_database, postgres, cache="shared", cache_local_bytes=0) as db:
        assert _save(db, tenant, {"n": 1}) == 1
        assert _load(db, tenant) == {"n": 1}
        assert _save(db, tenant, {"n": 2}) == 2
        assert _load(db, tenant) == {"n": 2}
        assert _stats(db).shared.errors >= 1 and _stats(db).served_shared == 0
