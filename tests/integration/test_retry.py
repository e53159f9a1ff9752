"""retry_on_conflict: a function that loses an optimistic-concurrency race runs again in
a fresh unit of work (what the losing attempt wrote rolled back), a bounded number of
times; concurrent writers lose no update."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from persistence import Database
from persistence.database_async import AsyncDatabase
from persistence.errors import InvalidInputError, VersionConflictError
from persistence.retry import retry_on_conflict
from persistence.retry_async import retry_on_conflict as retry_on_conflict_async
from tests.conftest import new_tenant


def _stale_first(calls: list[int]) -> Any:
    """``fn`` whose first attempt saves with a stale expected version (as if another
    writer had committed between its read and its write), after writing ``side``."""

    def bump(uow: Any) -> int:
        loaded = uow.states.load("doc")
        calls.append(loaded.meta.version)
        uow.states.save("side", {"attempt": len(calls)})
        stale = loaded.meta.version - 1 if len(calls) == 1 else loaded.meta.version
        uow.states.save("doc", {"n": loaded.state["n"] + 1}, expected_version=stale)
        return len(calls)

    return bump


def test_a_conflict_runs_again_in_a_fresh_unit_of_work(sync_db: Database) -> None:
    tenant = new_tenant(sync_db)
    with sync_db.unit_of_work(tenant) as uow:
        uow.states.save("doc", {"n": 0})
    calls: list[int] = []
    assert retry_on_conflict(sync_db, tenant, _stale_first(calls), backoff=0.001) == 2
    assert calls == [1, 1]  # the second attempt read the state anew
    with sync_db.unit_of_work(tenant) as uow:
        assert uow.states.load("doc").state == {"n": 1}
        side = uow.states.list_versions("side").items
        assert [v.version for v in side] == [1]  # the first attempt's write rolled back
        assert uow.states.load("side").state == {"attempt": 2}


def test_the_last_conflict_is_raised_and_other_errors_at_once(sync_db: Database) -> None:
    tenant = new_tenant(sync_db)
    with sync_db.unit_of_work(tenant) as uow:
        uow.states.save("doc", {"n": 0})
    tries: list[int] = []

    def always_stale(uow: Any) -> None:
        tries.append(1)
        uow.states.save("side", {"n": len(tries)})
        uow.states.save("doc", {"n": 9}, expected_version=0)

    with pytest.raises(VersionConflictError):
        retry_on_conflict(sync_db, tenant, always_stale, attempts=3, backoff=0.001)
    assert len(tries) == 3
    with sync_db.unit_of_work(tenant) as uow:
        assert uow.states.load("side") is None and uow.states.load("doc").state == {"n": 0}

    def broken(uow: Any) -> None:
        tries.append(1)
        raise KeyError("mine")

    with pytest.raises(KeyError):
        retry_on_conflict(sync_db, tenant, broken)
    assert len(tries) == 4  # not retried
    for bad in ({"attempts": 0}, {"attempts": 1.5}, {"backoff": -1.0}, {"backoff": 2.0}):
        with pytest.raises(InvalidInputError):
            retry_on_conflict(sync_db, tenant, broken, **bad)  # type: ignore[arg-type]
    assert len(tries) == 4


def test_concurrent_writers_lose_no_update(pg_db: Database) -> None:
    tenant = new_tenant(pg_db)
    with pg_db.unit_of_work(tenant) as uow:
        uow.states.save("counter", {"n": 0})

    def increment(uow: Any) -> None:
        loaded = uow.states.load("counter")
        uow.states.save(
            "counter", {"n": loaded.state["n"] + 1}, expected_version=loaded.meta.version
        )

    def writer() -> None:
        for _ in range(10):
            retry_on_conflict(pg_db, tenant, increment, attempts=50, backoff=0.002)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with pg_db.unit_of_work(tenant) as uow:
        loaded = uow.states.load("counter")
    assert loaded.state == {"n": 40} and loaded.meta.version == 41


def test_the_asyncio_api_retries_the_same_way(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Any]:
        adb = AsyncDatabase.from_url(f"sqlite:///{tmp_path / 'retry.sqlite3'}")
        try:
            await adb.migrate()
            async with adb.admin() as admin:
                await admin.tenants.create("acme")
            async with adb.unit_of_work("acme") as uow:
                await uow.states.save("doc", {"n": 0})
            calls: list[int] = []

            async def bump(uow: Any) -> int:
                loaded = await uow.states.load("doc")
                calls.append(loaded.meta.version)
                stale = loaded.meta.version - 1 if len(calls) == 1 else loaded.meta.version
                await uow.states.save("doc", {"n": 1}, expected_version=stale)
                return len(calls)

            done = await retry_on_conflict_async(adb, "acme", bump, backoff=0.001)
            async with adb.unit_of_work("acme") as uow:
                return done, (await uow.states.load("doc")).state
        finally:
            await adb.close()

    assert asyncio.run(scenario()) == (2, {"n": 1})
