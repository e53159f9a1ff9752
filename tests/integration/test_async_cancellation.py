"""Cancellation of asyncio units of work: a cancelled task rolls back, never commits half
of its work, returns its connection to the pool clean, and re-raises CancelledError."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from persistence import AsyncDatabase
from persistence.errors import ConflictError, LockNotAcquiredError, NotFoundError
from persistence.rls import SCOPE_SETTING
from tests.conftest import unique_slug
from tests.fixtures.services import PostgresTarget

POOL = 4


async def _tenant(adb: AsyncDatabase) -> str:
    slug = unique_slug("cancel")
    async with adb.admin() as admin:
        await admin.tenants.create(slug)
    return slug


async def _pair(adb: AsyncDatabase, tenant: str, i: int) -> None:
    """One unit of work writing two states that must only ever exist together."""
    async with adb.unit_of_work(tenant=tenant) as uow:
        await uow.states.save(f"a-{i % 7}", {"i": i})
        await asyncio.sleep(0)
        await uow.states.save(f"b-{i % 7}", {"i": i})
        await uow.workflows.save(f"w_{i % 7}", f"def run():\n    return {i}\n")


async def _cancel_at_random(
    work: Callable[[int], Any], count: int, rng: random.Random, workers: int
) -> tuple[int, int]:
    """Start ``count`` tasks of ``work``, cancel each after a random delay (0 to 3 ms
    for most, so that cancellations land on checkout, the entry, each statement and the
    commit; up to 100 ms for the rest, so some finish), a third of them a second time
    while the first cancellation is being handled; the numbers of tasks that were
    cancelled and that completed."""
    cancelled = completed = 0
    queue = list(range(count))

    async def worker() -> None:
        nonlocal cancelled, completed
        while queue:
            task = asyncio.ensure_future(work(queue.pop()))
            await asyncio.sleep(rng.random() * (0.003 if rng.random() < 0.6 else 0.1))
            task.cancel()
            if rng.random() < 0.3:  # and again, while it rolls back (a cancel storm)
                await asyncio.sleep(rng.random() * 0.002)
                task.cancel()
            try:
                await task
                completed += 1
            except asyncio.CancelledError:
                cancelled += 1
            except ConflictError:  # concurrent saves of one workflow: a clean refusal
                completed += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return cancelled, completed


async def _committed(adb: AsyncDatabase, tenant: str) -> tuple[set[int], set[int], set[int]]:
    """The ``i`` of every committed version of the a-, b- and w- rows."""
    a: set[int] = set()
    b: set[int] = set()
    w: set[int] = set()
    async with adb.unit_of_work(tenant=tenant, read_only=True) as uow:
        for k in range(7):
            for prefix, seen in (("a", a), ("b", b)):
                page = await uow.states.list_versions(f"{prefix}-{k}", limit=1000)
                for version in page.items:
                    loaded = await uow.states.load(f"{prefix}-{k}", version=version.version)
                    assert loaded is not None
                    seen.add(loaded.state["i"])
            try:
                revisions = await uow.workflows.revisions(f"w_{k}")
            except NotFoundError:
                continue
            w.update(int(r.source.split()[-1]) for r in revisions)
    return a, b, w


async def _pool_is_whole(adb: AsyncDatabase) -> None:
    """Every pooled connection comes back, and each is idle with no tenant set."""
    pool: Any = adb.engine.pool
    for _ in range(500):
        if pool.checkedout() == 0:
            break
        await asyncio.sleep(0.01)
    assert pool.checkedout() == 0
    connections = [await adb.engine.connect() for _ in range(POOL)]
    try:
        for conn in connections:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            assert driver.pgconn.transaction_status == 0  # IDLE: no open transaction
            cursor = await driver.execute(f"SELECT current_setting('{SCOPE_SETTING}', true)")
            assert (await cursor.fetchone())[0] in (None, "")
            await driver.rollback()
    finally:
        for conn in connections:
            await conn.close()


def test_a_thousand_random_cancellations_leave_no_partial_write_and_a_clean_pool(
    postgres: PostgresTarget,
) -> None:
    async def main() -> None:
        adb = AsyncDatabase.from_url(
            postgres.runtime_url, owner_url=postgres.owner_url, pool_size=POOL, max_overflow=0
        )
        async with adb:
            tenant = await _tenant(adb)
            rng = random.Random(12)
            cancelled, completed = await _cancel_at_random(
                lambda i: _pair(adb, tenant, i), 1000, rng, workers=8
            )
            assert cancelled + completed == 1000
            assert cancelled >= 500  # the delays cut most units of work somewhere inside
            a, b, w = await _committed(adb, tenant)
            assert a == b  # both states of a unit of work, or neither
            assert w <= a  # a workflow revision only with its states
            assert len(a) >= 1  # (some units of work did finish)
            await _pool_is_whole(adb)

    asyncio.run(main())


def test_cancellation_on_sqlite_rolls_back_and_frees_the_connection(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncDatabase.from_url(f"sqlite:///{tmp_path / 'c.sqlite3'}") as adb:
            await adb.migrate()
            tenant = await _tenant(adb)
            cancelled, completed = await _cancel_at_random(
                lambda i: _pair(adb, tenant, i), 100, random.Random(3), workers=2
            )
            assert cancelled + completed == 100
            a, b, w = await _committed(adb, tenant)
            assert a == b and w <= a
            async with adb.unit_of_work(tenant=tenant) as uow:  # nothing is left locked
                await uow.states.save("after", {"ok": True})

    asyncio.run(main())


def test_a_timeout_inside_a_unit_of_work_rolls_it_back(postgres: PostgresTarget) -> None:
    async def main() -> None:
        async with AsyncDatabase.from_url(
            postgres.runtime_url, owner_url=postgres.owner_url, pool_size=1, max_overflow=0
        ) as adb:
            tenant = await _tenant(adb)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    async with adb.unit_of_work(tenant=tenant) as uow:
                        await uow.states.save("slow", {"step": 1})
                        await asyncio.sleep(1)
            async with adb.unit_of_work(tenant=tenant) as uow:  # the one connection is back
                assert await uow.states.load("slow") is None

    asyncio.run(main())


def test_a_task_cancelled_inside_a_statement_reraises_and_keeps_nothing(
    postgres: PostgresTarget,
) -> None:
    async def main() -> None:
        async with AsyncDatabase.from_url(
            postgres.runtime_url, owner_url=postgres.owner_url, pool_size=1, max_overflow=0
        ) as adb:
            tenant = await _tenant(adb)
            started = asyncio.Event()

            async def slow() -> None:
                async with adb.unit_of_work(tenant=tenant) as uow:
                    await uow.states.save("kept-not", {"x": 1})
                    started.set()
                    await uow.session.execute(text("SELECT pg_sleep(5)"))

            task = asyncio.ensure_future(slow())
            await started.wait()
            await asyncio.sleep(0.1)  # inside pg_sleep on the server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with adb.unit_of_work(tenant=tenant) as uow:
                assert await uow.states.load("kept-not") is None

    asyncio.run(main())


# A statement of a second or so on SQLite (one row, computed in its first step)
_SLOW_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT max(x) FROM c"
)


def test_a_sqlite_statement_cut_by_a_cancellation_leaves_the_database_unlocked(
    tmp_path: Any,
) -> None:
    """The pool closes the connection of a statement a cancellation cut short; its
    transaction must end with it, even while the cancelled task (and the statement's
    cursor, in its traceback) is still referenced: else every other writer waits out
    the busy timeout and fails with "database is locked"."""

    async def main() -> None:
        url = f"sqlite:///{tmp_path / 'cut.sqlite3'}"
        async with AsyncDatabase.from_url(url, sqlite_busy_timeout_ms=10_000) as adb:
            await adb.migrate()
            tenant = await _tenant(adb)
            started = asyncio.Event()

            async def slow() -> None:
                async with adb.unit_of_work(tenant=tenant) as uow:
                    await uow.states.save("kept-not", {"x": 1})
                    started.set()
                    await uow.session.execute(text(_SLOW_SQLITE))

            task = asyncio.ensure_future(slow())
            await started.wait()
            await asyncio.sleep(0.05)  # inside the statement, on aiosqlite's thread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with adb.unit_of_work(tenant=tenant) as uow:  # another writer
                assert await uow.states.load("kept-not") is None
                await uow.states.save("after", {"ok": True})
            assert task.cancelled()  # (still referenced here, its traceback with it)

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["sql", "redis"])
def test_cancelled_lease_acquires_leave_no_lease_behind(
    postgres: PostgresTarget, redis_url: str, redis_prefix: str, backend: str
) -> None:
    from persistence.locks_async import list_leases

    async def main() -> None:
        async with AsyncDatabase.from_url(
            postgres.runtime_url,
            owner_url=postgres.owner_url,
            redis_url=redis_url,
            redis_key_prefix=f"{redis_prefix}-cancel",
            lease_backend=backend,
        ) as adb:
            tenant = await _tenant(adb)
            rng = random.Random(5)

            async def acquire(i: int) -> None:
                lease = await adb.lease(tenant=tenant, name=f"l{i % 5}", ttl=60, wait=0.2)
                await lease.release()

            async def cancelled_acquire(i: int) -> None:
                task = asyncio.ensure_future(acquire(i))
                await asyncio.sleep(rng.random() * 0.004)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LockNotAcquiredError):
                    await task

            for start in range(0, 200, 20):
                await asyncio.gather(*(cancelled_acquire(i) for i in range(start, start + 20)))
            await asyncio.sleep(0.2)  # give-backs of twice-cancelled acquires, if any
            assert await list_leases(adb, tenant) == []
            for k in range(5):  # and each name can be taken at once
                async with adb.lease(tenant=tenant, name=f"l{k}", ttl=5) as lease:
                    assert lease.fence > 0

    asyncio.run(main())
