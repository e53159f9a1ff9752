"""The Redis lease backend reads the database's fence floor only when Redis may have lost
the fence counter, and fences stay above the database's whenever it did: a flush, a
restart from an older snapshot, a failover to a replica that missed the last acquires
(persistence/_lease_redis_async.py; docs/leases.md, "When Redis forgets")."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from persistence import Database
from persistence.errors import StaleFenceError
from tests.integration.test_leases_redis import free_port, new_tenant
from tests.integration.test_leases_redis import throwaway_redis as throwaway_redis
from tests.integration.test_leases_redis import with_redis as with_redis

Servers = Callable[..., str]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """``servers(port=None, *args)``: start a private redis-server (its data directory
    under ``tmp_path``, snapshots only when asked for) and return its URL."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed for this test"
    procs: list[subprocess.Popen[bytes]] = []

    def start(port: int | None = None, *args: str) -> str:
        port = port or free_port()
        folder = tmp_path / str(port)
        folder.mkdir(exist_ok=True)
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        procs.append(
            subprocess.Popen(
                [*command, "--save", "", "--appendonly", "no", *args], stdout=subprocess.DEVNULL
            )
        )
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                if redis.Redis.from_url(url, socket_timeout=1).ping():
                    return url
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on {port} did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def _ids(db: Database, tenant: str) -> tuple[uuid.UUID, str, str]:
    """The tenant id, its counter key and the counter's stamp key for the name ``job``."""
    with db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    base = f"{db.settings.redis_key_prefix}:{{{tenant_id}}}"
    return tenant_id, f"{base}:fence:job", f"{base}:fence:~run:job"


def _written(db: Database, tenant: str, value: str) -> int:
    """Take ``job``, write under it (the database records its fence), release; the fence."""
    store = db.store(tenant=tenant, name="s")
    lease = db.lease(tenant=tenant, name="job")
    store.fenced(lease)["k"] = value
    lease.release()
    return lease.fence


@pytest.fixture
def floor_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names whose floor the Redis backend read from the database (either API)."""
    import persistence._lease_redis as sync_backend
    import persistence._lease_redis_async as async_backend

    reads: list[str] = []
    sync_floor, async_floor = sync_backend.fence_floor, async_backend.fence_floor

    def counted(scope: Any, name: str, **kw: Any) -> int:
        reads.append(name)
        return sync_floor(scope, name, **kw)

    async def counted_async(scope: Any, name: str, **kw: Any) -> int:
        reads.append(name)
        return await async_floor(scope, name, **kw)

    monkeypatch.setattr(sync_backend, "fence_floor", counted)
    monkeypatch.setattr(async_backend, "fence_floor", counted_async)
    return reads


def test_a_stamped_counter_needs_no_database_read(
    with_redis: Callable[..., Database], throwaway_redis: str, floor_reads: list[str]
) -> None:
    client = redis.Redis.from_url(throwaway_redis)
    with with_redis(throwaway_redis) as db:
        tenant = new_tenant(db)
        _, counter, stamp = _ids(db, tenant)  # (the tenant is known from here)
        fences = [_written(db, tenant, str(i)) for i in range(5)]
        assert floor_reads == ["job"]  # the first acquire only: the counter was new
        assert fences == list(range(fences[0], fences[0] + 5))
        assert client.get(stamp) is not None and client.pttl(stamp) > 0
        client.delete(counter)  # the counter gone: the floor is read again
        assert _written(db, tenant, "again") > fences[-1]
        client.delete(stamp)  # the stamp gone: again
        db.lease(tenant=tenant, name="job").release()
        assert floor_reads == ["job"] * 3


def test_fences_stay_above_postgres_when_the_counter_is_not_this_servers(
    with_redis: Callable[..., Database], throwaway_redis: str, floor_reads: list[str]
) -> None:
    """A counter that is there but stamped by another server process (copied by
    replication, restored from a snapshot) is raised to the floor before use."""
    client = redis.Redis.from_url(throwaway_redis)
    with with_redis(throwaway_redis) as db:
        tenant = new_tenant(db)
        _, counter, stamp = _ids(db, tenant)
        old = _written(db, tenant, "old")
        written = _written(db, tenant, "written")
        client.set(counter, old)  # as on a copy that missed the last acquire
        client.set(stamp, "another-server:another-replication-id")
        reads = len(floor_reads)
        lease = db.lease(tenant=tenant, name="job")
        assert len(floor_reads) == reads + 1
        assert lease.fence > written
        db.store(tenant=tenant, name="s").fenced(lease)["k"] = "new"
        lease.release()


def test_fences_stay_above_postgres_after_a_restart_from_an_older_snapshot(
    with_redis: Callable[..., Database], servers: Servers
) -> None:
    url = servers()
    client = redis.Redis.from_url(url)
    port = client.connection_pool.connection_kwargs["port"]
    with with_redis(url) as db:
        tenant = new_tenant(db)
        _, counter, stamp = _ids(db, tenant)
        _written(db, tenant, "saved")
        client.save()  # the snapshot Redis will restart from
        written = max(_written(db, tenant, f"later {i}") for i in range(3))
        client.shutdown(nosave=True)  # (a crash: what came after the snapshot is lost)
        servers(port)
        assert int(client.get(counter) or 0) < written  # a stale counter, present,
        assert client.get(stamp) is not None  # and stamped, by the previous process
        lease = db.lease(tenant=tenant, name="job")
        assert lease.fence > written
        store = db.store(tenant=tenant, name="s")
        store.fenced(lease)["k"] = "after the restart"
        lease.release()
        assert store["k"] == "after the restart"


def test_fences_stay_above_postgres_after_a_failover_to_a_replica_that_missed_writes(
    with_redis: Callable[..., Database], servers: Servers
) -> None:
    primary_url, replica_url = servers(), servers()
    primary = redis.Redis.from_url(primary_url)
    replica = redis.Redis.from_url(replica_url)
    replica.replicaof("127.0.0.1", primary.connection_pool.connection_kwargs["port"])
    with with_redis(primary_url) as db:
        tenant = new_tenant(db)
        _, counter, _ = _ids(db, tenant)
        first = _written(db, tenant, "replicated")
        for _ in range(100):  # the replica has the counter (and its stamp)
            if replica.get(counter) == str(first).encode():
                break
            time.sleep(0.05)
        replica.replicaof("NO", "ONE")  # cut off: what follows never reaches it
        written = _written(db, tenant, "missed by the replica")
        assert written > first
    with with_redis(replica_url) as db:  # the replica promoted: a failover
        _ids(db, tenant)  # (a known tenant: its first acquire would read the floor anyway)
        assert int(replica.get(counter) or 0) == first
        lease = db.lease(tenant=tenant, name="job")
        assert lease.fence > written
        store = db.store(tenant=tenant, name="s")
        store.fenced(lease)["k"] = "after the failover"
        lease.release()
        with pytest.raises(StaleFenceError):  # the old fence stays refused
            store.fenced(_token(db, tenant, written))["k"] = "stale"


def _token(db: Database, tenant: str, fence: int) -> Any:
    from persistence.fencing import FenceToken

    tenant_id, _, _ = _ids(db, tenant)
    return FenceToken(tenant_id, "job", fence, "a former holder")
