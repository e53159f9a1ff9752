"""Connections kept warm between tenant units of work (``persistence._warm``): reused
without a pool checkout, counted as idle, never parked dirty or after a failure, never
in the way of a checkout, checked in when idle too long or when the database closes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from persistence import Database
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import count_pings, events_of


@contextmanager
def _checkouts(db: Database) -> Iterator[list[int]]:
    """One item per checkout of ``db``'s pool while the block runs."""
    seen: list[int] = []

    def count(*_: Any) -> None:
        seen.append(1)

    pool = events_of(db).pool
    event.listen(pool, "checkout", count)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", count)


def _save(db: Database, tenant: str, n: int) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("doc", {"n": n})
        assert uow.states.load("doc").state == {"n": n}


def _backends(postgres: PostgresTarget) -> set[int]:
    """The server's backends of the runtime role."""
    with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s",
            (postgres.runtime_role,),
        ).fetchall()
    return {pid for (pid,) in rows}


def test_consecutive_units_of_work_reuse_one_connection_without_a_checkout(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=3, pool_ping_after=60) as db:
        _save(db, tenant, 0)  # the first checks out (and connects)
        pool = events_of(db).pool
        assert pool.checkedout() == 0  # parked between units of work: idle, not in use
        with _checkouts(db) as seen:
            for n in range(1, 6):
                _save(db, tenant, n)
                assert pool.checkedout() == 0
        assert seen == []  # no pool checkout: the parked connection served all five


def test_a_unit_of_work_that_failed_or_used_the_session_is_not_parked(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=2, pool_ping_after=60) as db:
        _save(db, tenant, 0)
        with _checkouts(db) as seen:
            with db.unit_of_work(tenant) as uow:  # SQL of the caller's own: reset at checkin
                uow.session.execute(text("SET application_name = 'mine'"))
            _save(db, tenant, 1)
            assert len(seen) == 1  # the dirty connection went back through the pool
            with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:
                uow.states.save("doc", {"n": 2})
                raise RuntimeError("boom")
            _save(db, tenant, 3)
            assert len(seen) == 2  # so did the one whose unit of work failed
        with db.unit_of_work(tenant) as uow:  # nothing of the failed one, no session state
            assert uow.states.load("doc").state == {"n": 3}
            name = uow.session.execute(text("SHOW application_name")).scalar_one()
            assert name == "persistence"


def test_a_checkout_of_your_own_gets_the_parked_connection_at_once(
    postgres: PostgresTarget, pg_db: Database
) -> None:
    tenant = new_tenant(pg_db)
    with Database.from_url(postgres.runtime_url, pool_size=1, max_overflow=0, pool_timeout=5) as db:
        _save(db, tenant, 0)  # parks the pool's only connection
        started = time.monotonic()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert time.monotonic() - started < 4  # not the pool_timeout: it was checked in
        _save(db, tenant, 1)


def test_threads_on_a_small_pool_never_wait_for_a_parked_connection(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    errors: list[BaseException] = []
    with open_database(postgres.runtime_url, pool_size=2, max_overflow=0, pool_timeout=10) as db:

        def work(k: int) -> None:
            try:
                for n in range(15):
                    with db.unit_of_work(tenant) as uow:
                        uow.store(f"t{k}")["n"] = n
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert events_of(db).pool.checkedout() == 0
        with db.unit_of_work(tenant) as uow:
            assert [uow.store(f"t{k}")["n"] for k in range(6)] == [14] * 6


def test_a_parked_connection_idle_past_ping_after_is_pinged_first(
    postgres: PostgresTarget,
    pg_db: Database,
    open_database: Callable[..., Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, pool_ping_after=0.2) as db:
        pings = count_pings(db, monkeypatch)
        _save(db, tenant, 0)
        _save(db, tenant, 1)
        assert pings == []  # used a moment ago: no ping
        time.sleep(0.3)
        _save(db, tenant, 2)
        assert pings == [1]  # idle past pool_ping_after while parked: pinged at checkout


def test_a_parked_connection_whose_backend_was_killed_is_replaced(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    before = _backends(postgres)
    with open_database(postgres.runtime_url, pool_size=2, pool_ping_after=60) as db:
        _save(db, tenant, 0)
        mine = _backends(postgres) - before
        assert len(mine) == 1
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (mine.pop(),))
        time.sleep(0.1)
        _save(db, tenant, 1)  # entering fails on the dead one, then runs on a new one
        _save(db, tenant, 2)
        with db.unit_of_work(tenant) as uow:
            assert uow.states.load("doc").meta.version == 3


def test_closing_the_database_closes_its_parked_connections(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    before = _backends(postgres)
    db = open_database(postgres.runtime_url, pool_size=2)
    with db:
        _save(db, tenant, 0)
        assert len(_backends(postgres) - before) == 1
    deadline = time.monotonic() + 5
    while _backends(postgres) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(postgres) - before == set()


def test_a_parked_connection_due_for_pool_recycle_is_replaced(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    before = _backends(postgres)
    with open_database(postgres.runtime_url, pool_size=1, pool_recycle=1, pool_ping_after=60) as db:
        _save(db, tenant, 0)
        first = _backends(postgres) - before
        time.sleep(1.2)  # its pool record is past pool_recycle while it sits parked
        _save(db, tenant, 1)
        deadline = time.monotonic() + 5
        while first & _backends(postgres) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not first & _backends(postgres)  # the old backend was closed, not reused
        assert len(_backends(postgres) - before) == 1


def test_a_cancellation_while_unfit_connections_are_checked_in_leaks_no_connection(
    postgres: PostgresTarget, pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unit of work takes a fit parked connection and, with it, finds one due for
    pool_recycle; cancelled while that one is checked in, it must give back both."""
    import asyncio

    from persistence import AsyncDatabase, _begin_async

    tenant = new_tenant(pg_db)
    real_check_in = _begin_async._check_in

    async def slow_check_in(parked: Any) -> None:
        await asyncio.sleep(0.2)  # a cancellation point inside the check-in
        await real_check_in(parked)

    async def main() -> None:
        async with AsyncDatabase.from_url(
            postgres.runtime_url, pool_size=2, max_overflow=0, pool_ping_after=60
        ) as adb:

            async def save(n: int) -> None:
                async with adb.unit_of_work(tenant) as uow:
                    await uow.states.save("doc", {"n": n})

            await asyncio.gather(save(0), save(1))  # two connections, both parked
            pool: Any = adb.engine.sync_engine.pool
            warm = pool.warm
            (fit, _), (due, _) = warm.release_all()[:2]
            born = time.time()
            warm.recycle = 3_600  # "due" is past pool_recycle, "fit" is not
            assert warm.park(fit, born) and warm.park(due, born - 10_000)  # due on top
            monkeypatch.setattr(_begin_async, "_check_in", slow_check_in)
            task = asyncio.ensure_future(save(2))
            await asyncio.sleep(0.05)  # inside the slow check-in
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            monkeypatch.setattr(_begin_async, "_check_in", real_check_in)
            await asyncio.sleep(0.5)  # the check-in and the give-back finish on their own
            assert pool.checkedout() == 0  # nothing leaked: both are back or parked
            await save(3)  # and the pool serves the next one

    asyncio.run(main())
