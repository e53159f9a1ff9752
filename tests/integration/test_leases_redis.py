"""The Redis lease backend: fails closed, survives a flush, keys carry the tenant."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from sqlalchemy import text

from persistence import Database
from persistence.errors import LockNotAcquiredError, StaleFenceError
from persistence.locks import FENCE_COUNTER_RETENTION_MS
from tests.fixtures.services import PostgresTarget


def new_tenant(db: Database) -> str:
    slug = f"r-{uuid.uuid4().hex[:12]}"
    with db.admin() as admin:
        admin.tenants.create(slug)
    return slug


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def with_redis(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> Callable[..., Database]:
    """``with_redis(url, **settings)``: the database with Redis at ``url``, on either API."""

    def open_it(url: str, **settings: object) -> Database:
        return open_database(
            postgres.runtime_url, owner_url=postgres.owner_url, redis_url=url, **settings
        )

    return open_it


def test_closed_port_fails_closed_within_the_timeout(with_redis: Callable[..., Database]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with with_redis(url, redis_socket_timeout=1.0) as db:
        tenant = new_tenant(db)
        started = time.monotonic()
        with pytest.raises(LockNotAcquiredError, match="unreachable"):
            db.lease(tenant=tenant, name="job", wait=30)  # no waiting on a dead service
        assert time.monotonic() - started < 1.0 + 5  # the timeout, plus a generous margin


def test_silent_server_fails_closed_within_the_timeout(with_redis: Callable[..., Database]) -> None:
    """A server that accepts connections but never answers: the socket timeout fires."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        with with_redis(url, redis_socket_timeout=0.5) as db:
            tenant = new_tenant(db)
            started = time.monotonic()
            with pytest.raises(LockNotAcquiredError):
                db.lease(tenant=tenant, name="job")
            assert time.monotonic() - started < 0.5 + 5


@pytest.fixture
def throwaway_redis() -> Iterator[str]:
    """A private redis-server, so a real FLUSHALL touches no one else's keys."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed for this test"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                if redis.Redis.from_url(url, socket_timeout=1).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_fences_stay_above_postgres_after_flushall(
    with_redis: Callable[..., Database], throwaway_redis: str
) -> None:
    client = redis.Redis.from_url(throwaway_redis)
    with with_redis(throwaway_redis) as db:
        tenant = new_tenant(db)
        store = db.store(tenant=tenant, name="s")
        first = db.lease(tenant=tenant, name="job")
        store.fenced(first)["k"] = "first"
        first.release()
        client.flushall()  # Redis forgets every lease and counter
        second = db.lease(tenant=tenant, name="job")
        assert second.fence > first.fence
        store.fenced(second)["k"] = "second"
        second.release()

        # The database's high-water mark wins even over the clock-based restart value.
        high = 5 * 10**15
        with db.unit_of_work(tenant) as uow:
            tenant_id = uow.tenant.id
        with db.owner_engine.begin() as conn:
            conn.execute(
                text("UPDATE fences SET fence = :f WHERE tenant_id = :t AND resource = 'job'"),
                {"f": high, "t": tenant_id},
            )
        client.flushall()
        third = db.lease(tenant=tenant, name="job")
        assert third.fence > high
        with pytest.raises(StaleFenceError):
            store.fenced(second)["k"] = "stale"
        store.fenced(third)["k"] = "third"
        assert store["k"] == "third"
        third.release()
        fourth = db.lease(tenant=tenant, name="job")  # the counter continues from there
        assert fourth.fence == third.fence + 1
        fourth.release()


def test_redis_keys_carry_the_tenant(
    with_redis: Callable[..., Database], redis_url: str, redis_prefix: str
) -> None:
    with with_redis(redis_url, redis_key_prefix=redis_prefix) as db:
        a, b = new_tenant(db), new_tenant(db)
        with db.unit_of_work(a) as uow:
            a_id = uow.tenant.id
        with db.unit_of_work(b) as uow:
            b_id = uow.tenant.id
        lease_a = db.lease(tenant=a, name="thread-1")
        lease_b = db.lease(tenant=b, name="thread-1")
        every = sorted(k.decode() for k in db.redis.scan_iter(match=f"{redis_prefix}:*"))
        # (and the read cache's epochs, which tenant administration moves: docs/cache.md)
        tagged = re.compile(
            re.escape(redis_prefix) + r":\{[0-9a-f-]{36}\}:(lease:|fence:|cache-epoch).*"
        )
        assert every and all(tagged.fullmatch(k) for k in every)  # other tests' keys too
        keys = [k for k in every if str(a_id) in k or str(b_id) in k]
        assert f"{redis_prefix}:{{{a_id}}}:lease:thread-1" in keys
        assert f"{redis_prefix}:{{{b_id}}}:lease:thread-1" in keys
        # The value is the owner token: another holder's token cannot release it.
        assert db.redis.get(f"{redis_prefix}:{{{a_id}}}:lease:thread-1") == lease_a.token.encode()
        lease_a.release()
        lease_b.release()
        for key in keys:  # leave nothing behind in the shared Redis
            db.redis.delete(key)


def test_fence_counters_expire_and_restart_above_every_fence(
    with_redis: Callable[..., Database], throwaway_redis: str
) -> None:
    """A fence counter is not kept for ever (names no longer used leave Redis), and one
    that expired restarts above every fence handed out before."""
    client = redis.Redis.from_url(throwaway_redis)
    with with_redis(throwaway_redis) as db:
        tenant = new_tenant(db)
        with db.unit_of_work(tenant) as uow:
            tenant_id = uow.tenant.id
        counter = f"{db.settings.redis_key_prefix}:{{{tenant_id}}}:fence:job"
        fences = []
        for _ in range(3):
            lease = db.lease(tenant=tenant, name="job")
            fences.append(lease.fence)
            lease.release()
        ttl = client.pttl(counter)
        assert 0 < ttl <= FENCE_COUNTER_RETENTION_MS
        assert ttl > FENCE_COUNTER_RETENTION_MS - 60_000  # refreshed by the last acquire
        client.pexpire(counter, 1)  # as if the retention had passed without an acquire
        time.sleep(0.05)
        assert client.exists(counter) == 0
        again = db.lease(tenant=tenant, name="job")
        assert again.fence > max(fences)
        again.release()
