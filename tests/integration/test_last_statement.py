"""A unit of work's last statement carrying its COMMIT (``scope.run(..., last=True)``,
PostgreSQL): one round trip for the whole unit of work, committed as the statement
returns; nothing runs after it; a failure commits nothing; a connection the server
closed in the pool is replaced first, and one lost on the way is reported in doubt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import Integer, Uuid, bindparam, text

from persistence import Database
from persistence._compiled import Statement
from persistence.errors import (
    DatabaseUnavailableError,
    NotFoundError,
    PersistenceError,
    TenantSuspendedError,
)
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import wire
from tests.integration.test_failures import NO_PING, _terminate

_TENANT = bindparam("tenant_id", type_=Uuid())
SET = Statement(
    text(
        "INSERT INTO lg_retention (tenant_id, keep_last, idle_seconds, updated_at) "
        "VALUES (:tenant_id, :keep, NULL, now()) "
        "ON CONFLICT (tenant_id) DO UPDATE SET keep_last = excluded.keep_last "
        "RETURNING keep_last"
    )
    .bindparams(_TENANT)
    .columns(keep_last=Integer()),
    "test_last_set",
)
#: Writes, then fails in the same statement (division by zero once the row is in).
SET_THEN_FAIL = Statement(
    text(
        "WITH w AS (INSERT INTO lg_retention (tenant_id, keep_last, idle_seconds, updated_at) "
        "VALUES (:tenant_id, :keep, NULL, now()) "
        "ON CONFLICT (tenant_id) DO UPDATE SET keep_last = excluded.keep_last "
        "RETURNING keep_last) SELECT 1 / (SELECT keep_last - keep_last FROM w) AS x"
    )
    .bindparams(_TENANT)
    .columns(x=Integer()),
    "test_last_set_then_fail",
)
GET = Statement(
    text("SELECT keep_last FROM lg_retention WHERE tenant_id = :tenant_id")
    .bindparams(_TENANT)
    .columns(keep_last=Integer()),
    "test_last_get",
)
SUICIDE = Statement(
    text("SELECT pg_terminate_backend(pg_backend_pid()) AS x").columns(x=Integer()),
    "test_last_suicide",
)


def _stored(db: Database, tenant: str) -> int | None:
    with db.unit_of_work(tenant) as uow:
        found = uow.scope.run(GET, {"tenant_id": uow.scope.tenant_id})
    return None if not found else int(found[0].keep_last)


def _set(uow: Any, keep: int, *, last: bool = True) -> list[Any]:
    return uow.scope.run(SET, {"tenant_id": uow.scope.tenant_id, "keep": keep}, last=last)  # type: ignore[no-any-return]


def _pid(db: Database, tenant: str) -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_the_whole_unit_of_work_is_one_round_trip_committed_as_it_returns(
    db_pg: Database, postgres: PostgresTarget
) -> None:
    tenant = new_tenant(db_pg)
    _stored(db_pg, tenant)  # the scope known: its entry goes with the first statement
    with wire(db_pg) as messages, db_pg.unit_of_work(tenant) as uow:
        assert [row.keep_last for row in _set(uow, 7)] == [7]
        with psycopg.connect(postgres.psycopg_url("admin")) as other:  # before the block ends
            query = "SELECT keep_last FROM lg_retention WHERE tenant_id = %s"
            assert other.execute(query, [uow.scope.tenant_id]).fetchall() == [(7,)]
    sent = [kind for direction, kind, _ in messages if direction == "F"]
    assert sent.count("Sync") == 1 and "Query" not in sent  # (no COMMIT of its own after)
    assert _stored(db_pg, tenant) == 7


def test_a_last_statement_after_others_commits_them_all(db_pg: Database) -> None:
    tenant = new_tenant(db_pg)
    with db_pg.unit_of_work(tenant) as uow:
        _set(uow, 1, last=False)
        _set(uow, 2)
    assert _stored(db_pg, tenant) == 2


def test_nothing_runs_after_the_last_statement(db_pg: Database) -> None:
    tenant = new_tenant(db_pg)
    refused = pytest.raises(PersistenceError, match="committed with its last statement")
    with db_pg.unit_of_work(tenant) as uow:
        _set(uow, 3)
        with refused:
            _set(uow, 4, last=False)
        with refused:
            uow.scope.run(GET, {"tenant_id": uow.scope.tenant_id})
        with refused:  # (SQL of one's own too: it would run outside any transaction)
            uow.session.execute(text("SELECT 1"))
        with refused:
            uow.store("s")["k"] = 1  # (a repository's statements built per call)
    assert _stored(db_pg, tenant) == 3


def test_an_exception_after_the_last_statement_keeps_the_commit_and_its_callbacks(
    db_pg: Database,
) -> None:
    tenant = new_tenant(db_pg)
    ran: list[str] = []
    with pytest.raises(RuntimeError), db_pg.unit_of_work(tenant) as uow:
        _set(uow, 5)
        uow.on_commit(lambda: ran.append("after commit"))  # (the read cache's invalidation)
        raise RuntimeError("after the commit")
    assert ran == ["after commit"]  # it committed: what follows a commit still happens
    assert _stored(db_pg, tenant) == 5


@pytest.mark.parametrize("first", [True, False])
def test_a_last_statement_that_fails_commits_nothing(db_pg: Database, first: bool) -> None:
    tenant = new_tenant(db_pg)
    _stored(db_pg, tenant)
    ran: list[str] = []
    failed = pytest.raises(PersistenceError, match="division by zero")
    with failed, db_pg.unit_of_work(tenant) as uow:
        uow.on_commit(lambda: ran.append("after commit"))
        if not first:
            _set(uow, 8, last=False)
        uow.scope.run(SET_THEN_FAIL, {"tenant_id": uow.scope.tenant_id, "keep": 9}, last=True)
    assert ran == [] and _stored(db_pg, tenant) is None
    with db_pg.unit_of_work(tenant) as uow:  # the connection went back usable
        _set(uow, 10)
    assert _stored(db_pg, tenant) == 10


def test_a_pooled_connection_the_server_closed_is_replaced_before_the_commit_is_sent(
    pg_db: Database,
    postgres: PostgresTarget,
    postgres_server: str,
    open_database: Callable[..., Database],
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, **NO_PING) as db:
        dead = _pid(db, tenant)
        _terminate(postgres_server, postgres.runtime_role, postgres.database, [dead])
        with db.unit_of_work(tenant) as uow:
            _set(uow, 11)
        assert _stored(db, tenant) == 11
        assert _pid(db, tenant) != dead


def test_a_connection_lost_while_committing_is_reported_in_doubt(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, **NO_PING) as db:
        _stored(db, tenant)
        in_doubt = pytest.raises(DatabaseUnavailableError, match="whether it committed is unknown")
        with in_doubt, db.unit_of_work(tenant) as uow:
            uow.scope.run(SUICIDE, {}, last=True)  # the server ends the session mid-batch
        with db.unit_of_work(tenant) as uow:  # never run again; the next one is fine
            _set(uow, 12)
        assert _stored(db, tenant) == 12


@pytest.mark.parametrize("last", [True, False])
def test_a_commit_in_doubt_stops_the_cache_serving_the_tenant(
    pg_db: Database,
    postgres: PostgresTarget,
    postgres_server: str,
    open_database: Callable[..., Database],
    last: bool,
) -> None:
    """What a unit of work whose COMMIT is in doubt wrote is not known, so nothing of its
    tenant cached before is served after it (the read cache's tenant epoch moves)."""
    tenant = new_tenant(pg_db)
    with (
        open_database(postgres.runtime_url, pool_size=1, cache="local", **NO_PING) as db,
        open_database(postgres.runtime_url) as other,
    ):
        db.store(tenant, "s")["k"] = 1
        assert db.store(tenant, "s")["k"] == 1  # cached now
        other.store(tenant, "s")["k"] = 2  # behind this cache's back (no shared tier)
        assert db.store(tenant, "s")["k"] == 1  # served from the cache: stale, as set up
        in_doubt = pytest.raises(DatabaseUnavailableError)
        with in_doubt, db.unit_of_work(tenant) as uow:
            if last:
                uow.scope.run(SUICIDE, {}, last=True)
            else:  # the COMMIT of its own is the round trip that finds the session gone
                _set(uow, 15, last=False)
                pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                _terminate(postgres_server, postgres.runtime_role, postgres.database, [pid])
        assert db.store(tenant, "s")["k"] == 2  # read from the database again


def test_a_scope_gone_since_writes_nothing_though_the_commit_went_with_the_statement(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    suspended, recreated = new_tenant(pg_db), new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        for tenant in (suspended, recreated):
            _stored(db, tenant)  # known: the next units of work defer their entry
        with pg_db.admin() as admin:
            admin.tenants.suspend(suspended)
            admin.tenants.delete(recreated)
            admin.tenants.create(recreated)
        with pytest.raises(TenantSuspendedError), db.unit_of_work(suspended) as uow:
            _set(uow, 13)  # row-level security refused the row: nothing committed
        gone = pytest.raises(NotFoundError, match="created again")
        with gone, db.unit_of_work(recreated) as uow:
            _set(uow, 14)
        with pg_db.admin() as admin:
            admin.tenants.resume(suspended)
        assert _stored(db, suspended) is None and _stored(db, recreated) is None
