"""Two processes resume one thread at the same time, 100 times: with single-writer on
the thread's checkpoints stay one chain (each checkpoint's parent is the one before it)
and every refused resume is a StaleFenceError; with it off the chain forks, as
LangGraph's own savers let it."""

from __future__ import annotations

import multiprocessing
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest

from persistence import Database
from persistence.langgraph import PersistenceSaver
from tests.conftest import new_tenant
from tests.fixtures import langgraph_fork
from tests.fixtures.services import PostgresTarget

ROUNDS = 100


def _race(postgres: PostgresTarget, tenant: str, single_writer: bool) -> tuple[str, list[str]]:
    thread = str(uuid.uuid4())
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        futures = [
            pool.submit(
                langgraph_fork.work,
                postgres.runtime_url,
                tenant,
                thread,
                single_writer,
                name,
                ROUNDS,
                barrier,
            )
            for name in ("a", "b")
        ]
        outcomes = [outcome for future in futures for outcome in future.result(timeout=300)]
    return thread, outcomes


def _children(db: Database, tenant: str, thread: str) -> Counter[str | None]:
    """How many checkpoints of the thread's root namespace each parent has."""
    saver = PersistenceSaver(db, tenant=tenant)
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    parents = [t.parent_config for t in saver.list(config)]
    return Counter(p["configurable"]["checkpoint_id"] if p else None for p in parents)


@pytest.mark.parametrize("single_writer", [True, False], ids=["single-writer", "unfenced"])
def test_concurrent_resumes(pg_db: Database, postgres: PostgresTarget, single_writer: bool) -> None:
    tenant = new_tenant(pg_db)
    thread, outcomes = _race(postgres, tenant, single_writer)
    tally = Counter(outcomes)
    children = _children(pg_db, tenant, thread)
    forks = {parent: n for parent, n in children.items() if n > 1}
    print(f"single_writer={single_writer}: {dict(tally)}, forked parents: {len(forks)}")
    assert tally["ok"] >= ROUNDS  # every round, at least one of the two went through
    if single_writer:
        assert forks == {}  # one chain: no checkpoint has two children
        assert set(tally) <= {"ok", "StaleFenceError"}
        assert tally["StaleFenceError"] > 0  # the race did happen
    else:
        assert forks, "two workers resumed one thread and both wrote: the chain forks"
        assert set(tally) == {"ok"}
