"""Migration 0007 (store item and artifact versions) on a database filled at 0006: nothing
lost up and down; rows from before start at version 0 and the next write gives them a
real one; on SQLite the artifacts' payload stays their last column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import insert, inspect, text

from persistence import Database
from persistence.codecs import encode
from persistence.models.artifacts import Artifact
from persistence.models.base import utcnow
from persistence.models.stores import Store, StoreItem
from persistence.repositories._store_statements import key_hash
from tests.fixtures.migrated import database_at
from tests.fixtures.services import PostgresTarget

ITEMS = {f"k{n}": {"n": n, "text": "é" * n} for n in range(20)}
ARTIFACT = bytes(range(256)) * 300


@pytest.fixture(params=["pg", "sqlite"])
def at_0006(
    request: pytest.FixtureRequest, postgres: PostgresTarget, tmp_path: Path
) -> Iterator[Database]:
    """A database migrated to 0006 (runtime role granted on PostgreSQL)."""
    with database_at(request.param, "0006", postgres, tmp_path) as db:
        yield db


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
    now, blob = utcnow(), encode(ARTIFACT, codec="zlib", threshold=0)
    artifact = dict(
        tenant_id=tenant.id,
        workspace_id=workspace,
        name="report.bin",
        kind="bytes",
        content_type="application/octet-stream",
        user_metadata={"k": 1},
        codec=blob.codec,
        checksum=blob.checksum,
        size=blob.raw_size,
        stored_size=blob.stored_size,
        created_at=now,
        updated_at=now,
        payload=blob.payload,
    )
    with db.owner_engine.begin() as conn:  # (no version column named: there is none yet)
        conn.execute(insert(Store.__table__).values({**store, "created_at": now}))
        conn.execute(insert(StoreItem.__table__), rows)
        conn.execute(insert(Artifact.__table__).values(artifact))


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

    db.migrate("0007")
    assert db.current_revision() == "0007"
    assert _raw_items(db) == before and set(_versions(db).values()) == {0}
    store = db.store("acme", "notes")
    assert dict(store.items()) == ITEMS  # read back, checksums verified
    with db.unit_of_work("acme") as uow:
        assert uow.artifacts.load("report.bin") == ARTIFACT
        uow.artifacts.save("report.bin", b"new")
    if db.dialect == "sqlite":  # payload last: large payloads stream in (migration 0003)
        with db.owner_engine.connect() as conn:
            names = [column["name"] for column in inspect(conn).get_columns("artifacts")]
        assert names[-2:] == ["version", "payload"]
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
    with db.owner_engine.connect() as conn:  # the artifact is there, as saved last
        (name, size) = conn.execute(text("SELECT name, size FROM artifacts")).one()
    assert (name, size) == ("report.bin", 3)
    db.migrate()
    with db.unit_of_work("acme") as uow:
        assert uow.artifacts.load("report.bin") == b"new"
    assert db.store("acme", "notes")["k1"] == {"n": "again"}
    assert db.store("acme", "notes")["k2"] == ITEMS["k2"]
