"""``transaction(lock=True)`` excludes other processes: no lost counter updates."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from persistence import Database
from tests.fixtures.services import PostgresTarget

PROCESSES = 4
INCREMENTS = 250

WORKER = """
import sys
from persistence import Database

url, owner, tenant, n = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
with Database.from_url(url, owner_url=owner) as db:
    store = db.store(tenant=tenant, workspace="default", name="counter")
    for _ in range(n):
        with store.transaction(lock=True):
            store["run"] = store.get("run", 0) + 1
"""


def run_workers(url: str, owner: str, tenant: str, cwd: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, owner, tenant, str(INCREMENTS)],
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
def target(request: pytest.FixtureRequest, db: Database) -> tuple[str, str]:
    """(runtime URL, owner URL) of ``db`` for the worker processes."""
    if db.dialect == "postgresql":
        pg: PostgresTarget = request.getfixturevalue("postgres")
        return pg.runtime_url, pg.owner_url
    return db.settings.database_url, ""


def test_four_processes_count_to_a_thousand(
    db: Database,
    make_tenant: Callable[..., str],
    target: tuple[str, str],
    tmp_path: Path,
) -> None:
    tenant = make_tenant()
    store = db.store(tenant=tenant, name="counter")
    store["run"] = 0
    store["other"] = "untouched"
    root = Path(__file__).resolve().parents[2]
    run_workers(*target, tenant, root)
    assert store["run"] == PROCESSES * INCREMENTS == 1000
    assert dict(store) == {"run": 1000, "other": "untouched"}
