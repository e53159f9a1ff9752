"""Concurrency on one event loop: many tasks sharing one AsyncDatabase and a few pooled
connections get exactly the outcome one at a time would give (locked increments, one
version chain per state, each run claimed once), on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from persistence import AsyncDatabase
from tests.conftest import unique_slug
from tests.fixtures.services import PostgresTarget

ROOT = Path(__file__).resolve().parents[2]


def _open(target: PostgresTarget | Path) -> AsyncDatabase:
    if isinstance(target, Path):
        return AsyncDatabase.from_url(f"sqlite:///{target}")
    return AsyncDatabase.from_url(
        target.runtime_url, owner_url=target.owner_url, pool_size=8, max_overflow=0
    )


@pytest.fixture(params=["pg", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, int]:
    """The database to open and the scale of the test: PostgreSQL at full scale, SQLite
    (one writer at a time) with a tenth of the tasks."""
    if request.param == "pg":
        return request.getfixturevalue("postgres"), 1
    path = tmp_path / "concurrency.sqlite3"

    async def migrate() -> None:
        async with _open(path) as adb:
            await adb.migrate()

    asyncio.run(migrate())
    return path, 10


async def _tenant(adb: AsyncDatabase) -> str:
    slug = unique_slug("conc")
    async with adb.admin() as admin:
        await admin.tenants.create(slug)
    return slug


def test_concurrent_locked_increments_of_one_key_lose_none(backend: tuple[Any, int]) -> None:
    target, scale = backend
    tasks = 200 // scale

    async def main() -> None:
        async with _open(target) as adb:
            tenant = await _tenant(adb)
            store = adb.store(tenant=tenant, name="counter")

            async def increment() -> None:
                async with store.transaction(lock=True):
                    await store.set("n", await store.get("n", 0) + 1)

            await asyncio.gather(*(increment() for _ in range(tasks)))
            assert await store.get("n") == tasks

    asyncio.run(main())


def test_concurrent_saves_of_one_state_make_one_chain(backend: tuple[Any, int]) -> None:
    target, scale = backend
    writers, saves = 8, 50 // scale

    async def main() -> None:
        async with _open(target) as adb:
            tenant = await _tenant(adb)

            async def writer(w: int) -> None:
                for i in range(saves):
                    async with adb.unit_of_work(tenant=tenant) as uow:
                        await uow.states.save("shared", {"writer": w, "i": i})

            await asyncio.gather(*(writer(w) for w in range(writers)))
            async with adb.unit_of_work(tenant=tenant, read_only=True) as uow:
                page = await uow.states.list_versions("shared", limit=1000)
            versions = sorted(v.version for v in page.items)
            assert versions == list(range(1, writers * saves + 1))  # no gap, no duplicate
            parents = {v.version: v.parent_version for v in page.items}
            assert all(parents[v] == (v - 1 or None) for v in versions)  # no fork

    asyncio.run(main())


_CLAIMER = textwrap.dedent(
    """
    import asyncio, json, sys
    from persistence import AsyncDatabase

    async def main(url, owner, tenant, tasks, me):
        async with AsyncDatabase.from_url(url, owner_url=owner or None) as adb:
            claimed = []

            async def claimer(t):
                while True:
                    async with adb.unit_of_work(tenant=tenant) as uow:
                        run = await uow.runs.claim(worker=f"{me}-{t}")
                    if run is None:
                        return
                    claimed.append(run.id)

            await asyncio.gather(*(claimer(t) for t in range(tasks)))
            print(json.dumps(claimed))

    url, owner, tenant, tasks, me = sys.argv[1:]
    asyncio.run(main(url, owner, tenant, int(tasks), me))
    """
)


def test_processes_of_concurrent_tasks_claim_each_run_exactly_once(
    backend: tuple[Any, int],
) -> None:
    target, scale = backend
    processes, tasks, runs = (4, 50, 1000) if scale == 1 else (2, 5, 100)

    async def prepare() -> str:
        async with _open(target) as adb:
            tenant = await _tenant(adb)
            async with adb.unit_of_work(tenant=tenant) as uow:
                await uow.workflows.create("job", "def run():\n    return 1\n")
                for i in range(runs):
                    await uow.runs.start("job", run_id=f"r{i:04d}")
            return tenant

    tenant = asyncio.run(prepare())
    if isinstance(target, Path):
        url, owner = f"sqlite:///{target}", ""
    else:
        url, owner = target.runtime_url, target.owner_url
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url, owner, tenant, str(tasks), f"p{p}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    claimed: list[str] = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        claimed += json.loads(out)
    assert len(claimed) == runs  # none claimed twice
    assert set(claimed) == {f"r{i:04d}" for i in range(runs)}  # none left unclaimed
