"""Migration 0008 (LangGraph's tables) on a database filled at 0007: every row of every
earlier table is the same after the upgrade and after the downgrade; the new tables
work at 0008 and are gone at 0007; upgrading again gives them back, empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy import inspect, text

from persistence import Database
from persistence.langgraph import PersistenceSaver
from tests.fixtures.migrated import database_at
from tests.fixtures.services import PostgresTarget

LG_TABLES = {"lg_threads", "lg_checkpoints", "lg_channels", "lg_blobs", "lg_writes"}
LG_TABLES |= {"lg_store_items", "lg_retention"}


@pytest.fixture(params=["pg", "sqlite"])
def at_0007(
    request: pytest.FixtureRequest, postgres: PostgresTarget, tmp_path: Path
) -> Iterator[Database]:
    with database_at(request.param, "0007", postgres, tmp_path) as db:
        yield db


def _fill(db: Database) -> None:
    with db.admin() as admin:
        admin.tenants.create("acme")
        admin.workspaces.create("acme", "research")
    with db.unit_of_work("acme", "research") as uow:
        uow.states.save("plan", {"step": 1, "text": "é" * 100})
        uow.states.save("plan", {"step": 2})
        uow.workflows.save("hello", "def run():\n    return 1\n", description="d")
        uow.artifacts.save("notes.txt", b"x" * 5000)
        uow.store("memory")["k"] = {"n": 1}


def _rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.owner_engine.connect() as conn:
        names = set(inspect(conn).get_table_names()) - LG_TABLES
        names = sorted(names - {"persistence_alembic_version"})
        dump = {}
        for name in names:
            found = conn.execute(text(f"SELECT * FROM {name}")).all()
            dump[name] = sorted((tuple(row) for row in found), key=repr)
        return dump


def _tables(db: Database) -> set[str]:
    with db.owner_engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def _upgrade(db: Database, postgres: PostgresTarget) -> None:
    db.migrate("0008")
    if db.dialect == "postgresql":  # the new tables need the grant again (docs/migrations.md)
        db.grant_runtime_role(postgres.runtime_role, create=False)


def test_upgrade_and_downgrade_keep_every_row(at_0007: Database, postgres: PostgresTarget) -> None:
    db = at_0007
    _fill(db)
    before = _rows(db)

    _upgrade(db, postgres)
    assert db.current_revision() == "0008"
    assert _rows(db) == before
    saver = PersistenceSaver(db, tenant="acme", workspace="research")
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": ["hi"] * 100}
    checkpoint["channel_versions"] = {"messages": 1}
    saver.put(config, checkpoint, {"step": 0}, {"messages": 1})
    found = saver.get_tuple(config)
    assert found is not None and found.checkpoint["channel_values"] == {"messages": ["hi"] * 100}
    with db.unit_of_work("acme", "research") as uow:
        assert uow.states.load("plan").state == {"step": 2}

    db.downgrade("0007")
    assert _rows(db) == before
    assert not _tables(db) & LG_TABLES

    _upgrade(db, postgres)
    assert _tables(db) >= LG_TABLES
    assert saver.get_tuple(config) is None  # the tables came back empty
