"""Runs under real concurrency: worker processes claiming, processes racing for a
deterministic value. Processes are spawned and given URLs, as real workers would be, and
open the API of the test's database (sync, or asyncio through the bridge)."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from persistence import Database
from tests.conftest import unique_slug
from tests.fixtures.bridge import is_async, open_on

SOURCE = "def run(n):\n    return n * n\n"
RUNS = 500
WORKERS = 4
RACERS = 8
_ctx = multiprocessing.get_context("spawn")


def _urls(db: Database) -> tuple[str, str, str | None]:
    """What a worker process opens: ``db``'s API and URLs."""
    api = "async" if is_async(db) else "sync"
    return api, db.settings.database_url, db.settings.owner_database_url


def _claim_loop(
    urls: tuple[str, str, str | None], tenant: str, name: str, barrier: Any, out: Any
) -> None:
    """A worker: claim and complete runs, each in its own unit of work, until none is left."""
    claimed: list[str] = []
    with open_on(urls[0], urls[1], owner_url=urls[2]) as db:
        barrier.wait(timeout=60)
        while True:
            with db.unit_of_work(tenant) as uow:
                run = uow.runs.claim(worker=name)
                if run is None:
                    break
                uow.runs.set_result(run.id, {"square": run.args["n"] ** 2, "by": name})
            claimed.append(run.id)
    out.put((name, claimed))


def _race_deterministic(
    urls: tuple[str, str, str | None], tenant: str, run_id: str, barrier: Any, out: Any
) -> None:
    with open_on(urls[0], urls[1], owner_url=urls[2]) as db:
        barrier.wait(timeout=60)
        with db.unit_of_work(tenant) as uow:
            value = uow.runs.deterministic(run_id, "seed", random.random)
            # Keep the transaction open a moment so the racers' transactions overlap.
            time.sleep(0.05)
        out.put(value)


def _run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    barrier, out = _ctx.Barrier(len(args)), _ctx.Queue()
    procs = [_ctx.Process(target=target, args=(*a, barrier, out)) for a in args]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    return results


@pytest.fixture
def ws(db: Database, make_tenant: Callable[..., str]) -> str:
    slug = make_tenant()
    with db.unit_of_work(slug) as uow:
        uow.workflows.create("square", SOURCE)
    return slug


def test_four_workers_claim_each_run_exactly_once(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        ids = [uow.runs.start("square", args={"n": n}).id for n in range(RUNS)]
        expected = {rid: n * n for n, rid in enumerate(ids)}
    results = _run_processes(_claim_loop, [(_urls(db), ws, f"worker-{i}") for i in range(WORKERS)])
    claimed = [rid for _, runs in results for rid in runs]
    assert len(claimed) == RUNS and set(claimed) == set(ids)  # none twice, none lost
    by_worker = {name: set(runs) for name, runs in results}
    with db.unit_of_work(ws) as uow:
        page = uow.runs.list(limit=RUNS + 1)
        assert len(page.items) == RUNS and {r.status for r in page.items} == {"succeeded"}
        for name, runs in by_worker.items():
            for rid in runs:
                assert uow.runs.get_result(rid) == {"square": expected[rid], "by": name}
                history = uow.runs.history(rid)
                assert [h.status for h in history] == ["pending", "running", "succeeded"]
                assert history[1].worker == name
        assert uow.runs.claim(worker="late") is None


def test_racing_first_calls_store_one_deterministic_value(db_pg: Database) -> None:
    # PostgreSQL only: there the racers' transactions truly overlap (on SQLite every unit of
    # work is an immediate transaction, so first calls are serialized by construction and
    # the single-process tests cover the semantics).
    db, ws = db_pg, unique_slug()
    with db.admin() as admin:
        admin.tenants.create(ws)
    with db.unit_of_work(ws) as uow:
        uow.workflows.create("square", SOURCE)
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("square", args={"n": 1}).id
    values = _run_processes(_race_deterministic, [(_urls(db), ws, rid)] * RACERS)
    assert len(values) == RACERS and len(set(values)) == 1
    with db.unit_of_work(ws) as uow:
        assert uow.runs.deterministic(rid, "seed", lambda: -1.0) == values[0]
