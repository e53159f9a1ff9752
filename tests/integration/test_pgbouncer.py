"""Tenant isolation through PgBouncer in transaction pooling mode.

The runtime URL goes through the private PgBouncer of ``tests.fixtures.pgbouncer``
(two server connections per role, shared by every client), with
``prepared_statements=False`` and ``transaction_pooler=True``; administration (the owner
URL) connects directly. The row-level security checks of ``test_rls`` run again here,
on both APIs, with their ``db`` and raw ``runtime`` connection going through PgBouncer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database
from persistence.database_async import AsyncDatabase
from persistence.errors import PersistenceError
from tests.conftest import new_tenant
from tests.fixtures.bridge import Loop, bridge
from tests.fixtures.pgbouncer import PgBouncerTarget
from tests.fixtures.services import PostgresTarget
from tests.integration import test_rls

# The checks of test_rls, collected again in this module: its fixtures below (``db``,
# ``runtime``) take the place of test_rls's own.
from tests.integration.test_rls import (  # noqa: F401
    probe,
    test_a_unit_of_work_cannot_write_rows_of_another_tenant,
    test_no_tenant_setting_sees_zero_rows,
    test_refusals_of_the_runtime_role_are_told_apart,
    test_runtime_role_is_neither_owner_nor_superuser,
    test_runtime_role_sees_only_the_tenant_set,
    test_writing_a_row_for_another_tenant_is_refused,
)

#: What a client of a transaction pooler sets: no server-side prepared statements, no
#: startup options (PgBouncer refuses them).
POOLED: dict[str, Any] = {"prepared_statements": False, "transaction_pooler": True}


@pytest.fixture(scope="module")
def bounced_db(pgbouncer: PgBouncerTarget, postgres: PostgresTarget) -> Iterator[Database]:
    with Database.from_url(pgbouncer.runtime_url, owner_url=postgres.owner_url, **POOLED) as db:
        yield db


@pytest.fixture(scope="module")
def bounced_adb(
    pgbouncer: PgBouncerTarget, postgres: PostgresTarget, event_loop_thread: Loop
) -> Iterator[Database]:
    adb = AsyncDatabase.from_url(pgbouncer.runtime_url, owner_url=postgres.owner_url, **POOLED)
    yield bridge(adb, event_loop_thread)
    event_loop_thread.run(adb.close())


@pytest.fixture(params=["sync", "async"])
def db(request: pytest.FixtureRequest) -> Database:
    """The library through PgBouncer, on both APIs (``make_tenant`` uses this ``db``)."""
    name = "bounced_adb" if request.param == "async" else "bounced_db"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def runtime(pgbouncer: PgBouncerTarget) -> Iterator[psycopg.Connection[Any]]:
    """A raw connection of the runtime role through PgBouncer."""
    with psycopg.connect(pgbouncer.psycopg_url("runtime")) as conn:
        yield conn


# SQL of a tenant's own (through uow.session) that leaves state on the server session,
# which PgBouncer then hands, in transaction pooling, to whichever client comes next.
LEFTOVERS: list[Callable[[Any, str], None]] = [
    # the tenant setting, session-level, naming the other tenant
    lambda session, other: session.execute(
        text("SELECT set_config(:name, :value, false)"),
        {"name": test_rls.SETTING, "value": other},
    ),
    # every transaction read-only from now on
    lambda session, other: session.execute(text("SET default_transaction_read_only = on")),
    # a search path without the library's schema
    lambda session, other: session.execute(text("SET search_path = pg_catalog")),
]


def test_interleaved_tenants_see_only_their_own_rows(
    db: Database, make_tenant: Callable[..., str], pgbouncer: PgBouncerTarget
) -> None:
    """Eight clients, two tenants, two server connections: a's clients leave session
    state behind every other unit of work (and roll some of them back); every unit of
    work of either tenant still sees its own rows and nothing of the other's, and each
    write lands where it should."""
    tenants = make_tenant(), make_tenant()
    ids = [test_rls.tenant_id(db, slug) for slug in tenants]
    backends: set[int] = set()
    rounds, lock = 12, threading.Lock()

    def client(n: int) -> None:
        mine, theirs = n % 2, 1 - n % 2
        for r in range(rounds):
            value = {"tenant": tenants[mine], "round": r}
            with contextlib.suppress(_Abandoned), db.unit_of_work(tenant=tenants[mine]) as uow:
                uow.store("mem")[f"{n}-{r}"] = value
                if mine == 0 and r % 2:  # tenant a's own SQL leaves session state
                    pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    LEFTOVERS[(n + r) % len(LEFTOVERS)](uow.session, ids[theirs])
                    with lock:
                        backends.add(int(pid))
                    if r in ABANDONED:
                        raise _Abandoned
            with db.unit_of_work(tenant=tenants[mine], read_only=True) as uow:
                store = uow.store("mem")
                kept = not (mine == 0 and r in ABANDONED)
                assert store.get(f"{n}-{r}") == (value if kept else None)
                assert store.get(f"{n + 1}-{r}") is None  # the other tenant's client

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(client, n) for n in range(8)]:
            future.result()
    assert 1 <= len(backends) <= pgbouncer.pool_size  # the clients shared the servers
    for mine, slug in enumerate(tenants):
        with db.unit_of_work(tenant=slug, read_only=True) as uow:
            keys = sorted(uow.store("mem").keys())
        kept = [r for r in range(rounds) if not (mine == 0 and r in ABANDONED)]
        assert keys == sorted(f"{n}-{r}" for n in range(mine, 8, 2) for r in kept)


ABANDONED = (3, 7)  # rounds whose unit of work a's clients roll back


class _Abandoned(Exception):
    pass


def test_states_stores_and_runs_through_pgbouncer(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    a, b = make_tenant("research"), make_tenant("research")
    for slug in (a, b):
        with db.unit_of_work(tenant=slug, workspace="research") as uow:
            uow.states.save("plan", {"owner": slug, "steps": [1]})
            uow.states.save("plan", {"owner": slug, "steps": [1, 2]})
            uow.workflows.create("fetch", "def run():\n    return 1\n")
            run_id = uow.runs.start("fetch").id
            uow.store("memory")["turns"] = {"owner": slug}
        with db.unit_of_work(tenant=slug, workspace="research") as uow:
            uow.runs.transition(run_id, "running", worker="w")
            uow.runs.set_result(run_id, {"owner": slug})  # (succeeded, with its result)
    for slug in (a, b):
        with db.unit_of_work(tenant=slug, workspace="research", read_only=True) as uow:
            loaded = uow.states.load("plan")
            assert loaded is not None and loaded[0] == {"owner": slug, "steps": [1, 2]}
            assert uow.store("memory")["turns"] == {"owner": slug}
            runs = uow.runs.list().items
            assert [run.status for run in runs] == ["succeeded"]
            assert uow.runs.get_result(runs[0].id) == {"owner": slug}
        with db.unit_of_work(tenant=slug) as uow:  # another workspace: none of it
            assert uow.states.load("plan") is None and "turns" not in uow.store("memory")


def test_startup_options_are_refused_by_pgbouncer(
    pgbouncer: PgBouncerTarget, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """Without ``transaction_pooler`` the runtime connections send their settings as
    startup options, which PgBouncer refuses: an error, not settings silently lost."""
    with open_database(pgbouncer.runtime_url, owner_url=postgres.owner_url) as plain:
        tenant = new_tenant(plain)
        with pytest.raises(PersistenceError, match="options"), plain.unit_of_work(tenant=tenant):
            pass
