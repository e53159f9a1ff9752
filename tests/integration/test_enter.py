"""Entering a unit of work on PostgreSQL: BEGIN and the tenant entry share one round trip."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database
from persistence.errors import NotFoundError, TenantSuspendedError
from tests.conftest import new_tenant, unique_slug
from tests.fixtures.bridge import driver_connection
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import wire


@contextmanager
def _round_trips(db: Database) -> Iterator[list[int]]:
    """Count client-to-server turns on the wire (libpq's protocol trace)."""
    result: list[int] = []
    with wire(db) as messages:
        yield result
    turns = itertools.pairwise(direction for direction, _, _ in messages)
    result.append(sum(1 for a, b in turns if (a, b) == ("F", "B")))


def test_empty_unit_of_work_is_two_round_trips(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.unit_of_work(tenant):  # connect and prepare outside the count
            pass
        with _round_trips(db) as trips, db.unit_of_work(tenant):
            pass
    assert trips == [2]  # BEGIN + persistence_enter(), then COMMIT: like BEGIN; COMMIT


def test_connections_go_back_to_the_pool_without_autocommit(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.unit_of_work(tenant) as uow:
            assert uow.session.execute(text("SELECT 1")).scalar_one() == 1
        with db.engine.connect() as conn:  # plain SQLAlchemy use of the same connection
            driver = driver_connection(conn)
            assert driver is not None and driver.autocommit is False
            conn.execute(text("CREATE TEMP TABLE t_enter (x int)"))
            conn.rollback()  # a real transaction: the table is gone
            assert conn.execute(text("SELECT to_regclass('pg_temp.t_enter')")).scalar() is None


def test_rollback_and_savepoints_still_work(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:
            uow.session.execute(text("SET LOCAL application_name = 'inside'"))
            raise RuntimeError
        with db.unit_of_work(tenant) as uow:
            name = uow.session.execute(text("SHOW application_name")).scalar_one()
            assert name == "persistence"  # the failed unit of work was rolled back
            with pytest.raises(RuntimeError), uow.savepoint():
                raise RuntimeError
            assert uow.session.execute(text("SELECT 1")).scalar_one() == 1


def test_unknown_and_suspended_tenants_are_refused(db_pg: Database) -> None:
    with pytest.raises(NotFoundError), db_pg.unit_of_work(unique_slug()):
        pass
    tenant = new_tenant(db_pg)
    with db_pg.admin() as admin:
        admin.tenants.suspend(tenant)
    with pytest.raises(TenantSuspendedError), db_pg.unit_of_work(tenant):
        pass


def test_a_dead_connection_is_replaced_before_the_caller_sees_it(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    settings: dict[str, Any] = {"pool_size": 1, "pool_ping_after": 3600}  # no ping: enter sees it
    with open_database(postgres.runtime_url, **settings) as db:
        with db.unit_of_work(tenant) as uow:
            pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with db.unit_of_work(tenant) as uow:  # the entry failed, and ran again on a new one
            assert uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid


@pytest.mark.parametrize("prepared", [True, False])
def test_prepared_statements_can_be_turned_off(
    postgres: PostgresTarget, prepared: bool, open_database: Callable[..., Database]
) -> None:
    """``prepared_statements=False`` (for PgBouncer in transaction mode): the hot paths
    work and leave no prepared statement in the server session; on, they are prepared."""
    with open_database(
        postgres.runtime_url, owner_url=postgres.owner_url, prepared_statements=prepared
    ) as db:
        tenant = new_tenant(db)
        for n in range(3):
            with db.unit_of_work(tenant) as uow:
                uow.states.save("doc", {"n": n})
                loaded = uow.states.load("doc")
                uow.store("s")["k"] = n
                assert loaded is not None and loaded.state == {"n": n}
                assert uow.store("s")["k"] == n
                names = uow.session.execute(
                    text("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql")
                ).scalar_one()
        assert (names > 0) is prepared
