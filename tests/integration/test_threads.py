"""One sync ``Database`` shared by many threads (one unit of work per thread): exact
results, no error, every connection back in the pool; its engines built once even when
the first use comes from many threads at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persistence import Database, _engines
from persistence.stores import Store
from tests.conftest import new_tenant, unique_slug
from tests.fixtures.services import PostgresTarget

ROUNDS = 20


@pytest.fixture(params=["sqlite", "pg"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None, int]:
    """(runtime URL, owner URL, threads): 16 threads on PostgreSQL, 4 on SQLite (one
    writer at a time: more threads only queue longer on its busy timeout)."""
    if request.param == "pg":
        target: PostgresTarget = request.getfixturevalue("postgres")
        return target.runtime_url, target.owner_url, 16
    url = f"sqlite:///{tmp_path / 'threads.sqlite3'}"
    with Database.from_url(url) as db:
        db.migrate()
    return url, None, 4


@pytest.fixture
def shared_db(backend: tuple[str, str | None, int]) -> Iterator[Database]:
    """A Database of its own (its pool counts are this test's). On PostgreSQL it has
    fewer connections than threads: they share the pool and wait for it (the SQLite
    engine does not take the pool settings)."""
    url, owner_url, _ = backend
    with Database.from_url(url, owner_url=owner_url, pool_size=4, max_overflow=0) as db:
        yield db


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads started together; their results, in order.
    Re-raises the first exception a thread raised."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_threads_share_one_database(
    shared_db: Database, backend: tuple[str, str | None, int]
) -> None:
    threads = backend[2]
    tenant = new_tenant(shared_db)
    counters: Store = shared_db.store(tenant=tenant, name="counters")  # shared, too

    def work(i: int) -> list[int]:
        versions = []
        for _ in range(ROUNDS):
            with counters.transaction(lock=True):  # per thread: its own transaction
                counters["hits"] = counters.get("hits", 0) + 1
                counters[f"thread-{i}"] = counters.get(f"thread-{i}", 0) + 1
            with shared_db.unit_of_work(tenant) as uow:  # one unit of work per thread
                versions.append(uow.states.save("log", {"thread": i}).version)
        return versions

    versions = in_threads(threads, work)

    total = threads * ROUNDS
    assert counters["hits"] == total
    assert {k: v for k, v in counters.items() if k != "hits"} == {
        f"thread-{i}": ROUNDS for i in range(threads)
    }
    # Every save got its own version: 1..total, none lost, none twice.
    assert sorted(v for mine in versions for v in mine) == list(range(1, total + 1))
    assert all(mine == sorted(mine) for mine in versions)  # each thread's in its order
    with shared_db.unit_of_work(tenant) as uow:
        page = uow.states.list_versions("log", limit=total + 1)
        assert [v.version for v in page.items] == list(range(total, 0, -1))
    pool: Any = shared_db.engine.pool
    assert pool.checkedout() == 0  # every connection is back


def test_first_use_from_many_threads_builds_each_engine_once(
    backend: tuple[str, str | None, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engines are built on first use; threads that all arrive first share one."""
    url, owner_url, threads = backend
    built: list[str] = []

    def slowly(name: str) -> Callable[..., Any]:
        build = getattr(_engines, name)

        def slow_build(*args: Any, **kwargs: Any) -> Any:
            built.append(name)
            time.sleep(0.05)  # widens the window in which a second build could start
            return build(*args, **kwargs)

        return slow_build

    for name in ("runtime_engine", "owner_engine"):
        monkeypatch.setattr(_engines, name, slowly(name))
    with Database.from_url(url, owner_url=owner_url) as db:

        def administer(i: int) -> int:
            with db.admin() as admin:
                admin.tenants.create(tenants[i])
            return id(db.owner_engine)

        def enter(i: int) -> int:
            with db.unit_of_work(tenants[i]) as uow:
                uow.states.save("first", {"thread": i})
            return id(db.engine)

        tenants = [unique_slug() for _ in range(threads)]
        owner_engines = in_threads(threads, administer)
        runtime_engines = in_threads(threads, enter)
        with db.unit_of_work(tenants[-1]) as uow:
            loaded = uow.states.load("first")
        assert loaded is not None and loaded.state == {"thread": threads - 1}

    assert len(set(owner_engines)) == len(set(runtime_engines)) == 1
    if owner_url is None:  # SQLite: one URL, one engine for both
        assert built == ["runtime_engine"]
        assert owner_engines == runtime_engines
    else:
        assert built == ["owner_engine", "runtime_engine"]
