"""Migrations on empty PostgreSQL and SQLite databases: up, down, up, no drift, concurrency."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from persistence import Database
from persistence.migrations import VERSION_TABLE, diff
from persistence.models import metadata
from tests.fixtures.services import PostgresTarget

OUR_TABLES = set(metadata.tables)


@pytest.fixture
def empty_pg(postgres: PostgresTarget) -> Iterator[str]:
    """A throwaway empty database owned by the owner role; its owner URL."""
    name = f"ptest_mig_{uuid.uuid4().hex[:10]}"
    admin = postgres.psycopg_url("admin")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{postgres.owner_role}"')
    try:
        yield make_url(postgres.owner_url).set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.sqlite3'}"


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def host_alembic_table(engine: Engine) -> None:
    """A host application's own Alembic table, which ours must never touch."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('hostapp1')"))


@pytest.mark.parametrize("backend", ["pg", "sqlite"])
def test_upgrade_downgrade_upgrade_without_drift(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("empty_pg" if backend == "pg" else "empty_sqlite")
    with Database.from_url(url) as db:
        engine = db.owner_engine
        host_alembic_table(engine)
        assert db.current_revision() is None
        db.migrate()
        assert db.current_revision() == db.head_revision()
        assert tables(engine) >= OUR_TABLES | {VERSION_TABLE}
        assert diff(engine) == []

        db.downgrade("base")
        assert db.current_revision() is None
        # Only Alembic's (empty) version table of ours may remain, and the host's table.
        assert tables(engine) <= {VERSION_TABLE, "alembic_version"}
        if backend == "pg":
            with engine.connect() as conn:
                leftovers = conn.execute(
                    text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'persistence%'")
                ).scalar()
                policies = conn.execute(text("SELECT count(*) FROM pg_policies")).scalar()
            assert (leftovers, policies) == (0, 0)

        db.migrate()
        assert db.current_revision() == db.head_revision()
        assert diff(engine) == []
        with engine.connect() as conn:
            host = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert host == "hostapp1"


MIGRATE = """
import sys
from persistence import Database
with Database.from_url(sys.argv[1]) as db:
    db.migrate()
    print(db.current_revision())
"""


def test_four_processes_migrate_an_empty_database_at_once(empty_pg: str, empty_sqlite: str) -> None:
    """Four on an empty PostgreSQL database and, at the same time (the machine is small),
    four on an empty SQLite file: every process succeeds and finds the schema at head."""
    procs = {
        (url, n): subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in (empty_pg, empty_sqlite)
        for n in range(4)
    }
    results = {key: (p.wait(timeout=120), *p.communicate()) for key, p in procs.items()}
    for url in (empty_pg, empty_sqlite):
        with Database.from_url(url) as db:
            head = db.head_revision()
            assert db.current_revision() == head
            assert diff(db.owner_engine) == []
    for (url, _), (code, out, err) in results.items():
        assert code == 0, f"{url}: {err}"
        assert out.strip() == head


def tenant_owned() -> list[str]:
    return sorted(name for name, t in metadata.tables.items() if "tenant_id" in t.c)


def test_metadata_tenant_id_leads_every_key_and_index() -> None:
    assert "workspaces" in tenant_owned()
    for name in tenant_owned():
        table = metadata.tables[name]
        assert table.primary_key.columns.keys()[0] == "tenant_id", f"{name}: primary key"
        for constraint in table.constraints:
            columns = getattr(constraint, "columns", None)
            if columns is not None and len(columns) and constraint is not table.primary_key:
                kind = type(constraint).__name__
                assert columns.keys()[0] == "tenant_id", f"{name}: {kind} {constraint.name}"
        for fk in table.foreign_key_constraints:
            assert fk.column_keys[0] == "tenant_id", f"{name}: foreign key {fk.name}"
        for index in table.indexes:
            first = next(iter(index.expressions))
            assert getattr(first, "name", None) == "tenant_id", f"{name}: index {index.name}"


def test_database_tenant_id_leads_every_key_and_index(pg_db: Database) -> None:
    """The same on the migrated PostgreSQL catalog (what the revisions really built)."""
    with pg_db.owner_engine.connect() as conn:
        inspector = inspect(conn)
        for name in inspector.get_table_names():
            columns = [c["name"] for c in inspector.get_columns(name)]
            if "tenant_id" not in columns:
                continue
            pk = inspector.get_pk_constraint(name)["constrained_columns"]
            assert pk[0] == "tenant_id", f"{name}: primary key"
            for uq in inspector.get_unique_constraints(name):
                assert uq["column_names"][0] == "tenant_id", f"{name}: {uq['name']}"
            for fk in inspector.get_foreign_keys(name):
                assert fk["constrained_columns"][0] == "tenant_id", f"{name}: {fk['name']}"
            for ix in inspector.get_indexes(name):
                assert ix["column_names"][0] == "tenant_id", f"{name}: {ix['name']}"
