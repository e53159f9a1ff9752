"""Migration 0009 (PostgreSQL: the store items' ``value_jsonb`` column) on a database
filled at 0008: every row of every table is the same after the upgrade and after the
downgrade; the column holds each existing value's JSON and every new one's, and the
store's filters read it; SQLite is untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from persistence import Database
from persistence.langgraph import PersistenceStore
from persistence.migrations import diff
from tests.fixtures.migrated import database_at
from tests.fixtures.services import PostgresTarget

VALUES: list[dict[str, Any]] = [
    {"kind": "a", "n": 1, "text": "é€😀" * 10},
    {"kind": "b", "n": 2.5, "nested": {"deep": [1, {"x": None}]}, "flag": True},
    {"kind": "a", "n": 10, "big": 2**60, "tiny": 1e-300},
    {"kind": "c", "n": -3, "list": list(range(50))},
]


@pytest.fixture(params=["pg", "sqlite"])
def at_0008(
    request: pytest.FixtureRequest, postgres: PostgresTarget, tmp_path: Path
) -> Iterator[Database]:
    with database_at(request.param, "0008", postgres, tmp_path) as db:
        yield db


def _fill(db: Database) -> PersistenceStore:
    """Rows in every table of 0008's store, through a store whose reads leave them as
    they are (no TTL restarted)."""
    with db.admin() as admin:
        admin.tenants.create("acme")
    with db.unit_of_work("acme") as uow:
        uow.states.save("plan", {"step": 1})
        uow.store("memory")["k"] = {"n": 1}
    store = PersistenceStore(db, tenant="acme", ttl={"refresh_on_read": False})
    for i, value in enumerate(VALUES):
        store.put(("notes", "u1"), f"k{i}", value)
    store.put(("notes", "u2"), "ttl", {"kind": "a", "n": 99}, ttl=60)
    return store


def _rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ours, without the new column."""
    with db.owner_engine.connect() as conn:
        names = sorted(set(inspect(conn).get_table_names()) - {"persistence_alembic_version"})
        dump = {}
        for name in names:
            columns = [c["name"] for c in inspect(conn).get_columns(name)]
            listed = ", ".join(f'"{c}"' for c in columns if c != "value_jsonb")
            found = conn.execute(text(f"SELECT {listed} FROM {name}")).all()
            dump[name] = sorted((tuple(row) for row in found), key=repr)
        return dump


def _columns(db: Database) -> set[str]:
    with db.owner_engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("lg_store_items")}


def _collation(db: Database) -> str | None:
    """The collation of ``lg_store_items.namespace`` (None: the database's)."""
    with db.owner_engine.connect() as conn:
        (found,) = [
            c for c in inspect(conn).get_columns("lg_store_items") if c["name"] == "namespace"
        ]
    return found["type"].collation  # type: ignore[no-any-return]


def _partial_index(db: Database) -> bool:
    """Whether the store's expiry index covers only items with a TTL."""
    with db.owner_engine.connect() as conn:
        indexes = inspect(conn).get_indexes("lg_store_items")
    (index,) = [i for i in indexes if i["name"] == "ix_lg_store_items_expires"]
    where = index.get("dialect_options", {})
    return any("expires_at IS NOT NULL" in str(v) for v in where.values())


def _found(store: PersistenceStore, filter: dict[str, Any]) -> list[str]:
    return sorted(item.key for item in store.search(("notes",), filter=filter, limit=50))


def _upgrade(db: Database, postgres: PostgresTarget) -> None:
    db.migrate("0009")
    if db.dialect == "postgresql":
        db.grant_runtime_role(postgres.runtime_role, create=False)


def test_upgrade_and_downgrade_keep_every_row(at_0008: Database, postgres: PostgresTarget) -> None:
    db = at_0008
    store = _fill(db)
    before = _rows(db)

    _upgrade(db, postgres)
    assert db.current_revision() == "0009"
    assert _rows(db) == before
    later = {"scope_keys"}  # (the tables of revisions after 0009)
    assert [d for d in diff(db.owner_engine) if d[1].name not in later] == []
    pg = db.dialect == "postgresql"
    assert ("value_jsonb" in _columns(db)) is pg
    assert _partial_index(db)
    assert (_collation(db) == "C") is pg
    if pg:
        with db.owner_engine.connect() as conn:
            mismatched = conn.execute(
                text(
                    "SELECT count(*) FROM lg_store_items WHERE value_jsonb IS DISTINCT FROM "
                    "CAST(value AS jsonb)"
                )
            ).scalar_one()
        assert mismatched == 0  # every row written at 0008 has it
    assert _found(store, {"kind": "a"}) == ["k0", "k2", "ttl"]
    assert _found(store, {"n": {"$gt": 2}}) == ["k1", "k2", "ttl"]  # numbers as numbers
    store.put(("notes", "u3"), "new", {"kind": "a", "n": 3})  # written at 0009
    assert _found(store, {"kind": "a", "n": 3}) == ["new"]
    assert store.get(("notes", "u1"), "k1").value == VALUES[1]  # the text is what is read
    store.delete(("notes", "u3"), "new")

    db.downgrade("0008")
    assert _rows(db) == before
    assert "value_jsonb" not in _columns(db)
    assert not _partial_index(db)
    assert _collation(db) != "C"

    _upgrade(db, postgres)
    assert ("value_jsonb" in _columns(db)) is pg
    assert _rows(db) == before
    assert _found(store, {"kind": "a"}) == ["k0", "k2", "ttl"]
