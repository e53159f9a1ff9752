"""Migration 0007 (store item versions) on a database filled at 0006: nothing lost up
and down; rows from before start at version 0 and the next write gives them a real one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import make_url

from persistence import Database
from persistence.codecs import encode
from persistence.models.base import utcnow
from persistence.models.stores import Store, StoreItem
from persistence.repositories._store_statements import key_hash
from tests.fixtures.services import PostgresTarget

ITEMS = {f"k{n}": {"n": n, "text": "é" * n} for n in range(20)}


@pytest.fixture(params=["pg", "sqlite"])
def at_0006(
    request: pytest.FixtureRequest, postgres: PostgresTarget, tmp_path: Path
) -> Iterator[Database]:
    """A database migrated to 0006 (runtime role granted on PostgreSQL)."""
    if request.param == "sqlite":
        with Database.from_url(f"sqlite:///{tmp_path / 'old.sqlite3'}") as db:
            db.migrate("0006")
            yield db
        return
    name = f"ptest_0007_{uuid.uuid4().hex[:10]}"
    admin = postgres.psycopg_url("admin")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{postgres.owner_role}"')
    owner = make_url(postgres.owner_url).set(database=name).render_as_string(False)
    runtime = make_url(postgres.runtime_url).set(database=name).render_as_string(False)
    try:
        with Database.from_url(runtime, owner_url=owner) as db:
            db.migrate("0006")
            db.grant_runtime_role(postgres.runtime_role, create=False)
            yield db
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill_as_0006(db: Database) -> None:
    """Items as the code of revision 0006 wrote them (it had no version column)."""
    with db.admin() as admin:
        tenant = admin.tenants.create("acme")
    with db.unit_of_work("acme") as uow:
        workspace = uow.workspace.id
    rows = []
    for key, value in ITEMS.items():
        enc = encode(orjson.dumps(value), codec="zlib", threshold=0)
        rows.append(
            {
                "tenant_id": tenant.id,
                "workspace_id": workspace,
                "store": "notes",
                "key_hash": key_hash(key),
                "key": key,
                "value": enc.payload,
                "codec": enc.codec,
                "checksum": enc.checksum,
            }
        )
    store = {"tenant_id": tenant.id, "workspace_id": workspace, "name": "notes"}
    with db.owner_engine.begin() as conn:  # (no version column named: there is none yet)
        conn.execute(insert(Store.__table__).values({**store, "created_at": utcnow()}))
        conn.execute(insert(StoreItem.__table__), rows)


def _raw_items(db: Database) -> dict[str, tuple[bytes, str, str]]:
    with db.owner_engine.connect() as conn:
        found = conn.execute(text("SELECT key, value, codec, checksum FROM store_items"))
        return {key: (bytes(value), codec, checksum) for key, value, codec, checksum in found}


def _versions(db: Database) -> dict[str, int]:
    with db.owner_engine.connect() as conn:
        return dict(conn.execute(text("SELECT key, version FROM store_items")).all())


def test_upgrade_and_downgrade_keep_every_item(at_0006: Database) -> None:
    db = at_0006
    _fill_as_0006(db)
    before = _raw_items(db)

    db.migrate()
    assert db.current_revision() == "0007"
    assert _raw_items(db) == before and set(_versions(db).values()) == {0}
    store = db.store("acme", "notes")
    assert dict(store.items()) == ITEMS  # read back, checksums verified
    store["k1"] = {"n": "new"}
    store["k1"] = {"n": "newer"}
    first = _versions(db)["k1"]
    assert first > 0
    del store["k1"]
    store["k1"] = {"n": "again"}
    assert _versions(db)["k1"] > first  # across a delete too

    db.downgrade("0006")
    after = _raw_items(db)
    assert set(after) == set(before) and after["k2"] == before["k2"]
    with db.owner_engine.connect() as conn:
        columns = {column["name"] for column in inspect(conn).get_columns("store_items")}
    assert "version" not in columns
    db.migrate()
    assert db.store("acme", "notes")["k1"] == {"n": "again"}
    assert db.store("acme", "notes")["k2"] == ITEMS["k2"]
