"""Eight writer processes on one state: gap-free numbering, no forked history."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sqlalchemy import event

from persistence import Database
from persistence._blocking import blocking
from persistence.errors import VersionConflictError
from tests.fixtures.bridge import is_async, open_on
from tests.fixtures.statements import events_of

WRITERS = 8
SAVES = 50


def _no_fsync_wait(dbapi_conn: Any, record: object) -> None:
    driver = blocking(dbapi_conn)  # (the asyncio engine's: blocking calls on it)
    autocommit, driver.autocommit = driver.autocommit, True
    driver.execute("SET synchronous_commit = off")
    driver.autocommit = autocommit


def _writer(api: str, url: str, owner_url: str | None, tenant: str, writer: int) -> tuple[int, int]:
    """Phase 1: SAVES blind saves of "shared". Phase 2: SAVES read-then-save attempts on
    "careful" with expected_version = what was read. Returns (successes, conflicts).
    ``api``: the test database's, which the writer process opens."""
    ok = conflicts = 0
    with open_on(api, url, owner_url=owner_url, pool_size=1) as db:
        if db.dialect == "postgresql":
            # Locking, not durability, is under test: skip the fsync wait of each commit.
            event.listen(events_of(db), "connect", _no_fsync_wait)
        for n in range(SAVES):
            with db.unit_of_work(tenant) as uow:
                uow.states.save("shared", {"writer": writer, "n": n})
        for n in range(SAVES):
            with db.unit_of_work(tenant) as uow:
                loaded = uow.states.load("careful")
                seen = 0 if loaded is None else loaded.meta.version
            try:
                with db.unit_of_work(tenant) as uow:
                    meta = uow.states.save(
                        "careful", {"writer": writer, "n": n}, expected_version=seen
                    )
                    assert meta.version == seen + 1 and meta.parent_version == (seen or None)
                ok += 1
            except VersionConflictError as exc:
                assert exc.expected == seen and exc.actual is not None and exc.actual > seen
                conflicts += 1
    return ok, conflicts


def _run(fn: object, db: Database, tenant: str) -> list[object]:
    api = "async" if is_async(db) else "sync"
    url, owner_url = db.settings.database_url, db.settings.owner_database_url
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WRITERS, mp_context=context) as pool:
        futures = [
            pool.submit(fn, api, url, owner_url, tenant, writer)  # type: ignore[arg-type]
            for writer in range(WRITERS)
        ]
        return [f.result(timeout=240) for f in futures]


def test_eight_writer_processes_gap_free_and_never_forked(db: Database, tenant: str) -> None:
    """One pool of 8 spawned processes runs both phases (spawning twice costs seconds)."""
    results = _run(_writer, db, tenant)
    with db.unit_of_work(tenant) as uow:
        shared = uow.states.list_versions("shared", limit=1000).items
        writers = {uow.states.load("shared", m.version).state["writer"] for m in shared}  # type: ignore[union-attr]
        careful = uow.states.list_versions("careful", limit=1000).items
    # Without expected_version: 400 versions, 1..400, no gap, no duplicate, linear parents.
    assert sorted(m.version for m in shared) == list(range(1, WRITERS * SAVES + 1))
    assert all(m.parent_version == (m.version - 1 or None) for m in shared)
    assert writers == set(range(WRITERS))
    # With expected_version: each attempt succeeded or raised VersionConflictError, and
    # the history is one line (each version's parent is the one before it).
    ok = sum(r[0] for r in results)  # type: ignore[index]
    conflicts = sum(r[1] for r in results)  # type: ignore[index]
    assert ok + conflicts == WRITERS * SAVES and ok >= 1
    assert [m.version for m in careful] == list(range(ok, 0, -1))
    assert all(m.parent_version == (m.version - 1 or None) for m in careful)
