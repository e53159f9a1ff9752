"""Migration 0006 (partial expiry indexes) on a database filled at 0005: nothing lost up
and down, and the indexes are partial only at 0006."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from persistence import Database
from tests.fixtures.migrated import database_at
from tests.fixtures.services import PostgresTarget

INDEXES = ("ix_state_heads_expires_at", "ix_state_versions_expires_at")


@pytest.fixture(params=["pg", "sqlite"])
def at_0005(
    request: pytest.FixtureRequest, postgres: PostgresTarget, tmp_path: Path
) -> Iterator[Database]:
    """A database migrated to 0005 (runtime role granted on PostgreSQL)."""
    with database_at(request.param, "0005", postgres, tmp_path) as db:
        yield db


def _partial(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes"))
        else:
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type='index'"))
        found = {name: " WHERE " in (sql or "") for name, sql in rows}
    return {name: found[name] for name in INDEXES}


def _contents(db: Database) -> list[tuple[str, int, object, bool]]:
    with db.unit_of_work("acme") as uow:
        page = uow.states.list()
        out = []
        for meta in page.items:
            loaded = uow.states.load(meta.state_id, version=1)
            assert loaded is not None
            out.append((meta.state_id, meta.version, loaded.state, meta.expires_at is None))
    return out


def test_upgrade_keeps_every_state_and_downgrade_restores_the_indexes(at_0005: Database) -> None:
    db = at_0005
    with db.admin() as admin:
        admin.tenants.create("acme")
    with db.unit_of_work("acme") as uow:
        for n in range(5):
            uow.states.save("forever", {"n": n}, tags=["t"])
            uow.states.save("expiring", {"n": n}, ttl=3600)
    before = _contents(db)
    assert _partial(db.owner_engine) == dict.fromkeys(INDEXES, False)

    db.migrate("0006")
    assert db.current_revision() == "0006"
    assert _partial(db.owner_engine) == dict.fromkeys(INDEXES, True)
    assert _contents(db) == before
    with db.unit_of_work("acme") as uow:
        assert uow.states.purge_expired() == 0  # the purge still runs on the partial index
        assert uow.states.search_by_tags(["t"]).items[0].state_id == "forever"

    db.downgrade("0005")
    assert _partial(db.owner_engine) == dict.fromkeys(INDEXES, False)
    assert _contents(db) == before
    db.migrate()
    assert _contents(db) == before
