"""Migration 0010 (scope tokens) on a database filled at 0009: every row of every table
is the same after the upgrade and after the downgrade; on PostgreSQL the policies and
the entry function change and come back, the runtime role's EXECUTE moves with the
entry, and units of work read everything back through each (0009's by slugs, 0010's by
token, a process that saw the upgrade switching at once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from persistence import Database
from persistence.migrations import diff
from tests.fixtures.migrated import database_at
from tests.fixtures.services import PostgresTarget
from tests.integration.test_tenancy import populate


@pytest.fixture(params=["pg", "sqlite"])
def at_0009(
    request: pytest.FixtureRequest, postgres: PostgresTarget, tmp_path: Path
) -> Iterator[Database]:
    with database_at(request.param, "0009", postgres, tmp_path) as db:
        yield db


def _rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of 0009 (0010 adds only ``scope_keys``)."""
    skip = {"persistence_alembic_version", "scope_keys"}
    with db.owner_engine.connect() as conn:
        names = sorted(set(inspect(conn).get_table_names()) - skip)
        return {
            name: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {name}")).all()), key=repr)
            for name in names
        }


def _policies(db: Database) -> set[tuple[str, str]]:
    with db.owner_engine.connect() as conn:
        rows = conn.execute(text("SELECT tablename, policyname FROM pg_policies")).all()
    return {(r[0], r[1]) for r in rows}


def _executes(db: Database, role: str, signature: str) -> bool:
    with db.owner_engine.connect() as conn:
        found = conn.execute(
            text("SELECT has_function_privilege(:r, to_regprocedure(:f), 'EXECUTE')"),
            {"r": role, "f": signature},
        ).scalar()
    return bool(found)


def _read_back(db: Database, tenant: str) -> tuple[Any, ...]:
    with db.unit_of_work(tenant, "research") as uow:
        state = uow.states.load("plan")
        return (
            state.state if state else None,
            [w.name for w in uow.workflows.list().items],
            uow.artifacts.load("report"),
            dict(uow.store("memory").items()),
        )


def test_upgrade_and_downgrade_keep_every_row(at_0009: Database, postgres: PostgresTarget) -> None:
    db, pg = at_0009, at_0009.dialect == "postgresql"
    with db.admin() as admin:
        for tenant in ("acme", "globex"):
            admin.tenants.create(tenant)
            admin.workspaces.create(tenant, "research")
    for tenant in ("acme", "globex"):
        populate(db, tenant)  # (0009's entry, by slugs: this code before the upgrade)
    expected = ({"steps": [1, 2, 3]}, ["fetch"], b"bytes", {"turns": 1})
    assert _read_back(db, "acme") == expected
    before = _rows(db)

    db.migrate("0010")
    assert db.current_revision() == "0010" and diff(db.owner_engine) == []
    assert _rows(db) == before
    assert _read_back(db, "acme") == expected  # now by scope token
    if pg:
        policies = _policies(db)
        assert ("state_versions", "scope_read") in policies
        assert not any(name == "tenant_isolation" for _, name in policies)
        role = postgres.runtime_role
        assert _executes(db, role, "persistence_enter(text)")
        with db.owner_engine.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT to_regprocedure('persistence_enter(text, text)')")
                ).scalar()
                is None
            )

    db.downgrade("0009")
    assert db.current_revision() == "0009"
    assert _rows(db) == before
    assert _read_back(db, "globex") == expected  # by slugs again
    if pg:
        policies = _policies(db)
        assert ("state_versions", "tenant_isolation") in policies
        assert not any(name.startswith("scope_") for _, name in policies)
        assert _executes(db, postgres.runtime_role, "persistence_enter(text, text)")
    with db.owner_engine.connect() as conn:
        assert "scope_keys" not in inspect(conn).get_table_names()
    db.migrate()
    assert _rows(db) == before
