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
from persistence.errors import NotFoundError, PersistenceError, TenantSuspendedError
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


def _sent(messages: list[tuple[str, str, str]]) -> list[str]:
    """The types of the messages the client sent."""
    return [kind for direction, kind, _ in messages if direction == "F"]


def _trips(messages: list[tuple[str, str, str]]) -> list[list[str]]:
    """The client's messages, grouped by round trip (each group ends where the server
    answered)."""
    groups: list[list[str]] = [[]]
    previous = "B"
    for direction, kind, body in messages:
        if direction == "F":
            if previous == "B" and groups[-1]:
                groups.append([])
            groups[-1].append(" ".join(f"{kind} {body}".split()))
        previous = direction
    return groups


def test_the_first_unit_of_work_of_a_scope_enters_in_one_round_trip(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant, first = new_tenant(pg_db), new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.engine.connect():  # connect outside the count
            pass
        with _round_trips(db) as trips, db.unit_of_work(first):
            pass
        # once per Database: which entry the schema has (the token entry, 0010), then
        # BEGIN + persistence_enter() (it learns the ids), then COMMIT
        assert trips == [3]
        with _round_trips(db) as trips, db.unit_of_work(tenant):  # a scope new to it
            pass
    assert trips == [2]  # BEGIN + persistence_enter(), then COMMIT


def test_a_unit_of_work_that_sends_no_statement_sends_nothing(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.unit_of_work(tenant):  # the process learns the scope
            pass
        with wire(db) as messages:
            for read_only in (False, True):
                with db.unit_of_work(tenant, read_only=read_only) as uow:
                    assert uow.tenant.slug == tenant  # (as the process last entered it)
                with db.unit_of_work(tenant) as uow:
                    uow.on_commit(lambda: None)
        assert _sent(messages) == []  # not a byte: no BEGIN, no entry, no COMMIT


def test_a_write_sends_begin_the_entry_and_itself_in_one_round_trip(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.unit_of_work(tenant) as uow:  # learn the scope, connect
            uow.states.save("doc", {"n": 0})
        with wire(db) as preparing, db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 1})
        with wire(db) as messages, db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 2})
            tenant_hex = uow.tenant.id.hex
    (first, commit), (prepared, _) = _trips(messages), _trips(preparing)
    # BEGIN, the entry and the save were prepared by the first unit of work (which
    # entered alone: BEGIN and the entry, its token a parameter, in one pipeline); a
    # scope entered before only sets its token (the statement's policies verify it)
    parsed = [m for m in prepared if m.startswith("Parse")]
    assert len(parsed) == 1 and "set_config('persistence.scope', $1::VARCHAR" in parsed[0]
    assert prepared[-1] == "Sync"
    assert [m.split()[0] for m in first] == [
        *("Bind", "Describe", "Execute"),  # BEGIN (prepared)
        *("Bind", "Describe", "Execute"),  # the scope token set (prepared)
        *("Bind", "Describe", "Execute"),  # the save (prepared)
        "Sync",
    ]
    assert tenant_hex in first[3]  # the scope token, by id, a parameter
    assert commit == ['Query "COMMIT"']
    with open_database(postgres.runtime_url) as db, db.unit_of_work(tenant) as uow:
        assert uow.states.load("doc").state == {"n": 2}
        assert uow.workspace.slug == "default" and uow.tenant.status == "active"


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
            conn.execute(text("SET application_name = 'inside'"))
            conn.rollback()  # a real transaction: the SET is undone with it
            assert conn.execute(text("SHOW application_name")).scalar() != "inside"


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


def test_a_dead_connection_under_the_first_entry_of_a_database_is_replaced(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """The first unit of work of a Database first asks which entry the schema has: on a
    pooled connection that died, that round trip fails as the entry would (a translated
    DatabaseUnavailableError), and the unit of work begins again on another one."""
    tenant = new_tenant(pg_db)
    settings: dict[str, Any] = {"pool_size": 1, "pool_ping_after": 3600}
    with open_database(postgres.runtime_url, **settings) as db:
        with db.engine.connect() as conn:  # pooled before any unit of work
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            conn.rollback()
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with db.unit_of_work(tenant) as uow:
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


def test_statements_stay_prepared_across_failed_units_of_work(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """A unit of work that fails rolls back; the library's prepared statements survive it
    (psycopg would answer its own ROLLBACK with DEALLOCATE ALL had it prepared anything)."""
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        for n in range(3):
            with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:
                uow.states.save("doc", {"n": n})
                uow.states.load("doc")
                raise RuntimeError
        with wire(db) as messages, db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 9})
            assert uow.states.load("doc").state == {"n": 9}
    assert not [m for m in _sent(messages) if m == "Parse"]  # nothing prepared again


def test_a_deallocate_all_of_the_callers_own_breaks_nothing(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """Once the caller has the session, the library's statements go unnamed (SQL of the
    caller's own may drop prepared statements); the checkin's reset drops them all, and
    the next units of work prepare again."""
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 1})
            uow.states.load("doc")
        with db.unit_of_work(tenant) as uow:
            uow.session.execute(text("DEALLOCATE ALL"))
            uow.states.save("doc", {"n": 2})  # (prepared above, gone now)
            loaded = uow.states.load("doc")
            assert loaded is not None and loaded.state == {"n": 2}
        for n in range(3):
            with wire(db) as messages, db.unit_of_work(tenant) as uow:
                loaded = uow.states.load("doc")
                assert loaded is not None and loaded.state == {"n": 2 + n}
                uow.states.save("doc", {"n": 3 + n})
            parsed = [m for m in _sent(messages) if m == "Parse"]
            assert len(parsed) == (4 if n == 0 else 0)  # BEGIN, the entry, the load, the save


def test_a_value_the_driver_cannot_load_is_a_library_error_first_statement_or_not(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        with db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 1})
            uow.session.execute(text("UPDATE state_versions SET expires_at = 'infinity'"))
            uow.session.execute(text("UPDATE state_heads SET expires_at = 'infinity'"))
        for first in (True, False):  # (the first statement goes with BEGIN and the entry)
            with pytest.raises(PersistenceError), db.unit_of_work(tenant) as uow:
                if not first:
                    uow.states.list()
                uow.states.load("doc")  # a timestamp past year 9999: psycopg refuses it


def test_a_statement_the_server_lost_fails_its_unit_of_work_only(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """SQL on ``scope.connection`` (meant for statements that leave no session state)
    that drops the prepared statements fails the next library statement of that unit of
    work (26000); the connection is then reset at checkin and the next ones prepare again."""
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1) as db:
        with db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 1})
        with pytest.raises(PersistenceError, match="26000"), db.unit_of_work(tenant) as uow:
            uow.states.load("doc")
            uow.scope.connection.exec_driver_sql("DEALLOCATE ALL")
            uow.states.save("doc", {"n": 2})
        for n in range(2):
            with db.unit_of_work(tenant) as uow:
                loaded = uow.states.load("doc")
                assert loaded is not None and loaded.state == {"n": 1 + n}
                uow.states.save("doc", {"n": 2 + n})
