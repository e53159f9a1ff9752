"""The runtime role's least privilege (PostgreSQL): it may not create temporary tables,
so none can stand in for one of ours (a temporary table is searched before every
schema, whatever the session's ``search_path``), and the grant says so when it cannot
take that privilege away."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from persistence import Database
from persistence.errors import ConfigurationError, PersistenceError
from tests.conftest import new_tenant
from tests.fixtures.migrated import database_at
from tests.fixtures.services import PostgresTarget


def _on(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(False)


def test_the_runtime_role_cannot_create_temporary_tables(
    pg_db: Database, postgres: PostgresTarget
) -> None:
    refused_by_server = pytest.raises(psycopg.errors.InsufficientPrivilege)
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn, refused_by_server:
        conn.execute("CREATE TEMPORARY TABLE tenants (id uuid)")
    tenant = new_tenant(pg_db)
    refused = pytest.raises(PersistenceError, match="permission denied")
    with refused, pg_db.unit_of_work(tenant) as uow:
        uow.session.execute(text("CREATE TEMPORARY TABLE lg_store_items (key text)"))


def test_a_search_path_that_starts_with_pg_temp_changes_nothing(pg_db: Database) -> None:
    tenant = new_tenant(pg_db)
    with pg_db.unit_of_work(tenant) as uow:
        uow.store("s")["k"] = 1
    with pytest.raises(PersistenceError), pg_db.unit_of_work(tenant) as uow:
        uow.session.execute(text("SET search_path = pg_temp, public"))
        uow.session.execute(text("CREATE TEMPORARY TABLE store_items (key text)"))
    with pg_db.unit_of_work(tenant) as uow:  # (the session was reset, nothing stood in)
        uow.session.execute(text("SET LOCAL search_path = pg_temp, public"))
        assert uow.store("s")["k"] == 1


@pytest.fixture
def own_database(postgres: PostgresTarget, tmp_path: Path) -> Iterator[Database]:
    """A database of its own at head (its owner the owner role), the grant run."""
    with database_at("pg", "0009", postgres, tmp_path) as db:
        yield db


def test_the_grant_is_idempotent_and_the_owner_keeps_its_own(
    own_database: Database, postgres: PostgresTarget
) -> None:
    own_database.grant_runtime_role(postgres.runtime_role, create=False)  # again: fine
    database = make_url(own_database.settings.database_url).database
    assert database is not None
    with psycopg.connect(_on(postgres.admin_url, database)) as conn:
        query = "SELECT has_database_privilege(%s, current_database(), 'TEMPORARY')"
        assert conn.execute(query, [postgres.runtime_role]).fetchone() == (False,)
        assert conn.execute(query, [postgres.owner_role]).fetchone() == (True,)


def test_a_temporary_privilege_the_owner_cannot_take_back_is_refused(
    own_database: Database, postgres: PostgresTarget
) -> None:
    database = make_url(own_database.settings.database_url).database
    assert database is not None
    other = f"ptest_other_{uuid.uuid4().hex[:8]}"
    admin = _on(postgres.admin_url, database)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{other}" NOLOGIN')
        conn.execute(f'GRANT TEMPORARY ON DATABASE "{database}" TO "{other}" WITH GRANT OPTION')
        conn.execute(f'SET ROLE "{other}"')  # a grant of its own, not the owner's
        conn.execute(f'GRANT TEMPORARY ON DATABASE "{database}" TO "{postgres.runtime_role}"')
        conn.execute("RESET ROLE")
    try:
        with pytest.raises(ConfigurationError, match="may still create temporary tables"):
            own_database.grant_runtime_role(postgres.runtime_role, create=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM "{postgres.runtime_role}"')
            conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM "{other}" CASCADE')
            conn.execute(f'DROP ROLE "{other}"')
