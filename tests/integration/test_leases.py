"""Leases on the SQL backend (SQLite, PostgreSQL) and on Redis: fences, expiry, fencing."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database, locks, locks_async
from persistence.database_async import AsyncDatabase
from persistence.errors import (
    InvalidInputError,
    InvalidTypeError,
    LeaseLostError,
    LockNotAcquiredError,
    StaleFenceError,
)
from persistence.records import LeaseRecord
from tests.fixtures.bridge import Loop, bridge, call, is_async, unbridged
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_pg_db(postgres: PostgresTarget, redis_url: str, redis_prefix: str) -> Iterator[Database]:
    with Database.from_url(
        postgres.runtime_url,
        owner_url=postgres.owner_url,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
    ) as db:
        yield db
        for key in db.redis.scan_iter(match=f"{redis_prefix}:*"):  # leave the shared Redis clean
            db.redis.delete(key)


@pytest.fixture(scope="session")
def redis_pg_adb(
    postgres: PostgresTarget, redis_url: str, redis_prefix: str, event_loop_thread: Loop
) -> Iterator[Database]:
    """The asyncio API with Redis leases, through the bridge (see tests/conftest.py)."""
    adb = AsyncDatabase.from_url(
        postgres.runtime_url,
        owner_url=postgres.owner_url,
        redis_url=redis_url,
        redis_key_prefix=f"{redis_prefix}-async",
    )
    yield bridge(adb, event_loop_thread)
    event_loop_thread.run(adb.close())


@pytest.fixture(
    params=[
        "sql-sqlite",
        "sql-pg",
        "redis-pg",
        "sql-sqlite-async",
        "sql-pg-async",
        "redis-pg-async",
    ]
)
def ldb(request: pytest.FixtureRequest) -> Database:
    """The same lease test on each backend, on both APIs."""
    backend, _, api = (
        request.param.rpartition("-") if "async" in request.param else (request.param, "", "")
    )
    name = {"sql-sqlite": "sqlite_db", "sql-pg": "pg_db", "redis-pg": "redis_pg_db"}[backend]
    if api:
        name = name.replace("_db", "_adb")
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def list_leases(db: Database, tenant: str) -> list[LeaseRecord]:
    """``list_leases`` of the API ``db`` is on: ``persistence.locks`` or ``locks_async``."""
    if isinstance(db, Database):
        return locks.list_leases(db, tenant)
    return call(locks_async.list_leases, db, tenant)  # type: ignore[no-any-return]


def new_tenant(db: Database) -> str:
    slug = f"l-{uuid.uuid4().hex[:12]}"
    with db.admin() as admin:
        admin.tenants.create(slug)
    return slug


def backend_name(db: Database) -> str:
    return type(unbridged(db._lease_backend())).__name__.removeprefix("Async")


def test_backend_choice(ldb: Database) -> None:
    expected = "RedisLeaseBackend" if ldb.settings.redis_url else "SqlLeaseBackend"
    assert backend_name(ldb) == expected


def test_acquire_is_exclusive_and_fences_grow(ldb: Database) -> None:
    tenant = new_tenant(ldb)
    first = ldb.lease(tenant=tenant, name="thread-42", ttl=30)
    assert first.held and 0 < first.remaining <= 30 and first.fence > 0
    with pytest.raises(LockNotAcquiredError):
        ldb.lease(tenant=tenant, name="thread-42")
    with pytest.raises(LockNotAcquiredError):
        ldb.lease(tenant=tenant, name="thread-42", wait=0.3)
    other = ldb.lease(tenant=tenant, name="thread-43")
    [held] = [r for r in list_leases(ldb, tenant) if r.name == "thread-42"]
    assert held.holder == first.token and held.fence == first.fence and held.remaining > 0
    first.release()
    first.release()  # a second release does nothing
    assert not first.held and first.remaining == 0
    with ldb.lease(tenant=tenant, name="thread-42") as second:
        assert second.fence > first.fence
    assert not second.held
    third = ldb.lease(tenant=tenant, name="thread-42")
    assert third.fence > second.fence
    third.release()
    other.release()
    assert list_leases(ldb, tenant) == []


def test_wait_takes_the_lease_once_it_expires(ldb: Database) -> None:
    tenant = new_tenant(ldb)
    stalled = ldb.lease(tenant=tenant, name="job", ttl=0.5)
    later = ldb.lease(tenant=tenant, name="job", ttl=30, wait=10)
    assert later.fence > stalled.fence
    with pytest.raises(LeaseLostError):
        stalled.extend()
    later.release()


def test_extend_keeps_the_lease(ldb: Database) -> None:
    tenant = new_tenant(ldb)
    lease = ldb.lease(tenant=tenant, name="long", ttl=1)
    lease.extend(ttl=60)
    assert lease.remaining > 30
    time.sleep(1.2)  # past the first ttl: the extension holds
    with pytest.raises(LockNotAcquiredError):
        ldb.lease(tenant=tenant, name="long")
    lease.extend()
    lease.release()
    with pytest.raises(LeaseLostError):
        lease.extend()


def test_expired_holder_is_fenced_off(ldb: Database) -> None:
    """Acceptance 4: A stalls past expiry, B takes over and writes; A's writes fail."""
    tenant = new_tenant(ldb)
    store = ldb.store(tenant=tenant, name="shared")
    a = ldb.lease(tenant=tenant, name="thread-7", ttl=1)
    store.fenced(a)["owner"] = "A"
    with ldb.unit_of_work(tenant) as uow:
        uow.states.save("thread-7", {"owner": "A"}, fence=a)
    b = ldb.lease(tenant=tenant, name="thread-7", ttl=30, wait=10)  # A stalled past expiry
    assert b.fence > a.fence
    store.fenced(b)["owner"] = "B"
    with ldb.unit_of_work(tenant) as uow:
        uow.states.save("thread-7", {"owner": "B"}, fence=b)

    with pytest.raises(StaleFenceError):
        store.fenced(a)["owner"] = "A again"
    with pytest.raises(StaleFenceError), store.transaction():
        store["unfenced"] = 1  # rolled back with the stale write of the same block
        store.fenced(a).update(owner="A", extra=True)
    with pytest.raises(StaleFenceError), ldb.unit_of_work(tenant) as uow:
        uow.states.save("thread-7", {"owner": "A again"}, fence=a)
    assert dict(store) == {"owner": "B"}
    with ldb.unit_of_work(tenant) as uow:
        loaded = uow.states.load("thread-7")
        assert loaded is not None and loaded.state == {"owner": "B"}

    with pytest.raises(LeaseLostError):
        a.release()
    assert b.held
    with pytest.raises(LockNotAcquiredError):
        ldb.lease(tenant=tenant, name="thread-7")
    store.fenced(b)["owner"] = "B twice"  # the same holder may write again
    b.extend()
    b.release()


def test_context_exit_reports_a_lost_lease(ldb: Database) -> None:
    tenant = new_tenant(ldb)
    with pytest.raises(LeaseLostError), ldb.lease(tenant=tenant, name="short", ttl=0.3):
        ldb.lease(tenant=tenant, name="short", wait=10).release()  # taken over meanwhile
    with pytest.raises(KeyError), ldb.lease(tenant=tenant, name="short2", ttl=0.3):
        ldb.lease(tenant=tenant, name="short2", wait=10)
        raise KeyError("the body's error is not hidden")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": ""}, InvalidInputError),
        ({"name": "has space"}, InvalidInputError),
        ({"name": "{brace}"}, InvalidInputError),
        ({"name": "x" * 201}, InvalidInputError),
        ({"name": 42}, InvalidTypeError),
        ({"ttl": 0}, InvalidInputError),
        ({"ttl": -1}, InvalidInputError),
        ({"ttl": float("nan")}, InvalidInputError),
        ({"ttl": True}, InvalidTypeError),
        ({"ttl": "30"}, InvalidTypeError),
        ({"wait": -1}, InvalidInputError),
        ({"wait": float("inf")}, InvalidInputError),
    ],
)
def test_bad_lease_arguments(db_sqlite: Database, kwargs: dict[str, object], error: type) -> None:
    tenant = new_tenant(db_sqlite)
    args: dict[str, object] = {"tenant": tenant, "name": "ok", **kwargs}
    with pytest.raises(error):
        db_sqlite.lease(**args)  # type: ignore[arg-type]
    assert list_leases(db_sqlite, tenant) == []


def test_a_lease_fences_only_its_own_tenant(ldb: Database) -> None:
    a, b = new_tenant(ldb), new_tenant(ldb)
    lease_a = ldb.lease(tenant=a, name="same-name")
    lease_b = ldb.lease(tenant=b, name="same-name")  # another tenant: independent
    assert list_leases(ldb, b)[0].holder == lease_b.token
    assert [r.name for r in list_leases(ldb, a)] == ["same-name"]
    with pytest.raises(InvalidInputError):
        ldb.store(tenant=b, name="s").fenced(lease_a)["k"] = 1
    with pytest.raises(InvalidTypeError):
        ldb.store(tenant=b, name="s").fenced(3)
    assert len(ldb.store(tenant=b, name="s")) == 0
    lease_a.release()
    assert list_leases(ldb, a) == [] and len(list_leases(ldb, b)) == 1
    lease_b.release()


WORKER = """
import sys
from tests.fixtures.bridge import open_on
url, owner, redis_url, prefix, tenant, api = sys.argv[1:7]
with open_on(api, url, owner_url=owner or None, redis_url=redis_url or None,
             redis_key_prefix=prefix) as db:
    for _ in range(4):
        with db.lease(tenant=tenant, name="shared", ttl=30, wait=60) as lease:
            print(lease.fence, flush=True)
"""


def test_fences_strictly_increase_across_processes(
    ldb: Database, request: pytest.FixtureRequest
) -> None:
    tenant = new_tenant(ldb)
    owner = ""
    if ldb.dialect == "postgresql":
        owner = request.getfixturevalue("postgres").owner_url
    argv = [
        ldb.settings.database_url,
        owner,
        ldb.settings.redis_url or "",
        ldb.settings.redis_key_prefix,
        tenant,
        "async" if is_async(ldb) else "sync",  # the worker processes open ldb's API
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    fences: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        mine = [int(line) for line in out.split()]
        assert mine == sorted(mine) and len(mine) == 4
        fences += mine
    assert len(set(fences)) == 12  # never the same fence twice
    last = ldb.lease(tenant=tenant, name="shared")
    assert last.fence > max(fences)
    last.release()


def test_runtime_role_sees_no_other_tenants_leases(
    db_pg: Database, postgres: PostgresTarget
) -> None:
    a, b = new_tenant(db_pg), new_tenant(db_pg)
    lease = db_pg.lease(tenant=a, name="secret")
    db_pg.store(tenant=a, name="s").fenced(lease)["k"] = 1
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        conn.execute("SELECT * FROM persistence_enter(%s)", (token(db_pg, a),))
        assert conn.execute("SELECT count(*) FROM leases").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM fences").fetchone() == (1,)
        conn.rollback()
        conn.execute("SELECT * FROM persistence_enter(%s)", (token(db_pg, b),))
        for table in ("leases", "fences"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
            conn.execute(f"UPDATE {table} SET fence = 0")  # touches nothing
        conn.rollback()
        for table in ("leases", "fences"):  # no tenant set: nothing
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    with pytest.raises(LockNotAcquiredError):
        db_pg.lease(tenant=a, name="secret")
    lease.release()


def test_tenant_delete_removes_leases_and_fences(ldb: Database) -> None:
    tenant = new_tenant(ldb)
    with ldb.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    lease = ldb.lease(tenant=tenant, name="gone")
    ldb.store(tenant=tenant, name="s").fenced(lease)["k"] = 1
    with ldb.admin() as admin:
        admin.tenants.delete(tenant)
    key = tenant_id if ldb.dialect == "postgresql" else tenant_id.hex
    with ldb.owner_engine.connect() as conn:
        for table in ("leases", "fences", "stores", "store_items"):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": key}
            ).scalar_one()
            assert count == 0, table
