"""``transaction(lock=True)`` excludes other processes: no lost counter updates."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from persistence import Database
from persistence.errors import StatementTimeoutError
from tests.conftest import unique_slug
from tests.fixtures.bridge import is_async
from tests.fixtures.services import PostgresTarget

PROCESSES = 4
INCREMENTS = 250

WORKER = """
import sys
from tests.fixtures.bridge import open_on

url, owner, tenant, n = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
with open_on(sys.argv[5], url, owner_url=owner) as db:
    store = db.store(tenant=tenant, workspace="default", name="counter")
    for _ in range(n):
        with store.transaction(lock=True):
            store["run"] = store.get("run", 0) + 1
"""


def run_workers(api: str, url: str, owner: str, tenant: str, cwd: Path) -> None:
    """``PROCESSES`` worker processes on ``api`` ("sync" or "async")."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, owner, tenant, str(INCREMENTS), api],
            cwd=cwd,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    failures = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(err[-2000:])
    assert not failures, failures


@pytest.fixture
def target(request: pytest.FixtureRequest, db: Database) -> tuple[str, str, str]:
    """(API, runtime URL, owner URL) of ``db`` for the worker processes."""
    api = "async" if is_async(db) else "sync"
    if db.dialect == "postgresql":
        pg: PostgresTarget = request.getfixturevalue("postgres")
        return api, pg.runtime_url, pg.owner_url
    return api, db.settings.database_url, ""


def test_four_processes_count_to_a_thousand(
    db: Database,
    make_tenant: Callable[..., str],
    target: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    tenant = make_tenant()
    store = db.store(tenant=tenant, name="counter")
    store["run"] = 0
    store["other"] = "untouched"
    root = Path(__file__).resolve().parents[2]
    api, url, owner = target
    run_workers(api, url, owner, tenant, root)
    assert store["run"] == PROCESSES * INCREMENTS == 1000
    assert dict(store) == {"run": 1000, "other": "untouched"}


def test_a_locked_store_blocks_other_lockers_but_not_plain_writers(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """PostgreSQL: while one transaction holds ``transaction(lock=True)``, a plain write
    and a read of the same store go through at once; a second locker waits (here it runs
    into a 1 s statement timeout instead of waiting the holder out)."""
    with open_database(
        postgres.runtime_url, owner_url=postgres.owner_url, statement_timeout_ms=1000
    ) as db:
        tenant = unique_slug()
        with db.admin() as admin:
            admin.tenants.create(tenant)
        store = db.store(tenant=tenant, name="shared")
        store["a"] = 1  # the store row exists and is committed
        holding, release = threading.Event(), threading.Event()

        def holder() -> None:
            with store.transaction(lock=True):
                store["a"] = 2
                holding.set()
                release.wait(10)

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert holding.wait(10)
            other = db.store(tenant=tenant, name="shared")
            other["b"] = 1  # would raise (statement timeout) if it waited on the lock
            assert other.get("a") == 1  # the holder's write is not committed yet
            with pytest.raises(StatementTimeoutError), other.transaction(lock=True):
                pass
            assert thread.is_alive() and not release.is_set()  # still holding throughout
        finally:
            release.set()
            thread.join(10)
        assert dict(store) == {"a": 2, "b": 1}
