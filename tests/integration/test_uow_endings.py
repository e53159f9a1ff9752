"""How a unit of work ends when something inside it failed and the caller caught it: it
never reports a commit that did not happen, and never runs on a silently new connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from persistence import Database
from persistence.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    InvalidInputError,
    ReadOnlyError,
)
from persistence.records import ArtifactRecord
from persistence.repositories import artifacts
from tests.conftest import new_tenant
from tests.fixtures.bridge import module_of, open_like
from tests.fixtures.services import PostgresTarget
from tests.integration.test_failures import _terminate


def test_a_caught_error_that_aborted_the_transaction_commits_nothing(db_pg: Database) -> None:
    tenant = new_tenant(db_pg)
    ran: list[str] = []
    aborted = pytest.raises(DatabaseError, match="aborted by an earlier error")
    with aborted as info, db_pg.unit_of_work(tenant) as uow:
        uow.states.save("a", {"v": 1})
        uow.on_commit(lambda: ran.append("on_commit"))
        with pytest.raises(DBAPIError):  # SQL of one's own, its error caught: aborted
            uow.session.execute(text("SELECT 1 / 0"))
    assert info.value.sqlstate == "25P02"
    assert ran == []  # never for a transaction that rolled back
    with db_pg.unit_of_work(tenant) as uow:
        assert uow.states.load("a") is None


def test_a_lost_connection_is_never_replaced_inside_the_unit_of_work(
    db_pg: Database, postgres: PostgresTarget, postgres_server: str
) -> None:
    tenant = new_tenant(db_pg)
    lost = pytest.raises(DatabaseUnavailableError, match="nothing was committed")
    with lost, db_pg.unit_of_work(tenant) as uow:
        uow.states.save("a", {"v": 1})
        pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _terminate(postgres_server, postgres.runtime_role, postgres.database, [pid])
        with pytest.raises(DatabaseUnavailableError):
            uow.states.save("b", {"v": 2})
        with pytest.raises(DatabaseUnavailableError, match="lost its database connection"):
            uow.states.save("c", {"v": 3})  # not on a new connection, without the tenant
    with db_pg.unit_of_work(tenant) as uow:
        assert [uow.states.load(s) for s in "abc"] == [None, None, None]


def test_a_fenced_save_in_a_read_only_unit_of_work_leaves_it_usable(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    tenant = make_tenant()
    with db.unit_of_work(tenant) as uow:
        uow.states.save("a", {"v": 1})
    lease_db = open_like(db, lease_backend="sql")
    with (
        lease_db,
        lease_db.lease(tenant, "writer", ttl=30) as lease,
        db.unit_of_work(tenant, read_only=True) as uow,
    ):
        with pytest.raises(ReadOnlyError):
            uow.states.save("a", {"v": 2}, fence=lease)
        loaded = uow.states.load("a")  # the transaction was not aborted by the refusal
        assert loaded is not None and loaded.state == {"v": 1}


def test_a_value_a_column_type_refuses_is_invalid_input(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    tenant = make_tenant()
    naive = datetime(2026, 1, 1)
    record = ArtifactRecord(
        name="a.bin", kind="bytes", content_type="application/octet-stream", size=1,
        stored_size=1, codec="none", checksum="", metadata={}, created_at=naive,
        updated_at=naive,
    )  # fmt: skip
    from persistence.codecs import checksum

    record = record.model_copy(update={"checksum": checksum(b"x")})
    with db.unit_of_work(tenant) as uow:
        with pytest.raises(InvalidInputError, match="naive"):
            uow.artifacts.import_artifact(record, b"x")
        assert not uow.artifacts.exists("a.bin")


def test_a_sqlite_artifact_whose_stream_fails_leaves_nothing(
    db_sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_sqlite
    tenant = new_tenant(db)
    with db.unit_of_work(tenant) as uow:
        uow.artifacts.save("kept.bin", b"old")

    def failing(driver: sqlite3.Connection, rowid: int, payload: bytes) -> None:
        with driver.blobopen("artifacts", "payload", rowid):  # the row's space is reserved
            raise OSError("disk full")

    monkeypatch.setattr(module_of(db, artifacts), "_write_blob", failing)
    with db.unit_of_work(tenant) as uow:
        for name in ("new.bin", "kept.bin"):
            with pytest.raises(OSError):
                uow.artifacts.save(name, b"x" * 100)  # caught: the unit of work commits
    monkeypatch.undo()
    with db.unit_of_work(tenant) as uow:
        assert not uow.artifacts.exists("new.bin")
        assert uow.artifacts.load("kept.bin") == b"old"  # not a zero-filled replacement
