"""Unit of work transactions: commit, rollback, savepoints and after-commit callbacks.

The tests write to a probe table made for them (tenant_id-keyed, with RLS and grants
on PostgreSQL like every tenant table), so they do not depend on any aggregate.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from persistence import Database
from persistence.errors import (
    AlreadyExistsError,
    PersistenceError,
    ReadOnlyError,
    translate_errors,
)
from persistence.rls import enable_scope_rls
from persistence.uow import UnitOfWork
from tests.conftest import unique_slug

PROBE = "test_uow_probe"


@pytest.fixture
def probe(db: Database) -> Iterator[str]:
    pg = db.dialect == "postgresql"
    with db.owner_engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {PROBE} (tenant_id {'uuid' if pg else 'VARCHAR(36)'} NOT NULL, "
                "note VARCHAR(50) NOT NULL, PRIMARY KEY (tenant_id, note))"
            )
        )
        if pg:
            for statement in enable_scope_rls(PROBE, "tenant_id"):
                conn.execute(text(statement))
            role = db.engine.url.username
            conn.execute(text(f'GRANT SELECT, INSERT, DELETE ON {PROBE} TO "{role}"'))
    try:
        yield PROBE
    finally:
        with db.owner_engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {PROBE}"))


def write(uow: UnitOfWork, note: str) -> None:
    uow.session.execute(
        text(f"INSERT INTO {PROBE} (tenant_id, note) VALUES (:t, :n)"),
        {"t": _key(uow.tenant.id, uow.scope.dialect), "n": note},
    )


def _key(tenant_id: uuid.UUID, dialect: str) -> object:
    return tenant_id if dialect == "postgresql" else str(tenant_id)


def notes(db: Database, tenant: str) -> list[str]:
    """What a fresh unit of work (another transaction) sees."""
    with db.unit_of_work(tenant=tenant) as uow:
        rows = uow.session.execute(
            text(f"SELECT note FROM {PROBE} WHERE tenant_id = :t ORDER BY note"),
            {"t": _key(uow.tenant.id, db.dialect)},
        )
        return list(rows.scalars())


def test_leaving_the_block_commits(db: Database, probe: str, tenant: str) -> None:
    with db.unit_of_work(tenant=tenant) as uow:
        write(uow, "kept")
    assert notes(db, tenant) == ["kept"]


def test_an_exception_leaves_nothing_written(db: Database, probe: str, tenant: str) -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), db.unit_of_work(tenant=tenant) as uow:
        write(uow, "first")
        uow.on_commit(lambda: ran.append("callback"))
        write(uow, "second")
        raise RuntimeError("boom")
    assert notes(db, tenant) == []
    assert ran == []


def test_a_database_error_rolls_back_and_is_translated(
    db: Database, probe: str, tenant: str
) -> None:
    with pytest.raises(AlreadyExistsError), db.unit_of_work(tenant=tenant) as uow:
        write(uow, "first")
        write(uow, "dup")
        with translate_errors():
            write(uow, "dup")
    assert notes(db, tenant) == []


def test_rolled_back_savepoint_keeps_the_outer_work(db: Database, probe: str, tenant: str) -> None:
    ran: list[str] = []
    with db.unit_of_work(tenant=tenant) as uow:
        write(uow, "outer")
        with pytest.raises(ValueError), uow.savepoint():
            write(uow, "inner")
            uow.on_commit(lambda: ran.append("inner"))
            raise ValueError("undo the savepoint only")
        with uow.savepoint():
            write(uow, "released")
            uow.on_commit(lambda: ran.append("released"))
        uow.on_commit(lambda: ran.append("outer"))
        assert ran == []  # nothing runs before the commit
    assert notes(db, tenant) == ["outer", "released"]
    assert ran == ["released", "outer"]


def test_released_savepoint_callbacks_die_with_the_outer_rollback(
    db: Database, probe: str, tenant: str
) -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError), db.unit_of_work(tenant=tenant) as uow:
        with uow.savepoint():
            write(uow, "inner")
            uow.on_commit(lambda: ran.append("inner"))
        raise RuntimeError("outer fails after the savepoint was released")
    assert notes(db, tenant) == []
    assert ran == []


def test_on_commit_runs_after_the_commit_is_visible(db: Database, probe: str, tenant: str) -> None:
    seen: list[list[str]] = []
    with db.unit_of_work(tenant=tenant) as uow:
        write(uow, "visible")
        uow.on_commit(lambda: seen.append(notes(db, tenant)))
    assert seen == [["visible"]]


def test_a_failing_callback_is_logged_and_does_not_undo(
    db: Database, probe: str, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise OSError("cache down")

    with caplog.at_level(logging.ERROR), db.unit_of_work(tenant=tenant) as uow:
        write(uow, "kept")
        uow.on_commit(broken)
        uow.on_commit(lambda: ran.append("next"))
    assert notes(db, tenant) == ["kept"]
    assert ran == ["next"]
    assert "on_commit callback" in caplog.text


def test_using_a_closed_unit_of_work_is_an_error(db: Database, tenant: str) -> None:
    uow = db.unit_of_work(tenant=tenant)
    with pytest.raises(PersistenceError, match="not open"):
        uow.on_commit(lambda: None)
    with uow:
        pass
    with pytest.raises(PersistenceError, match="not open"):
        uow.savepoint()


def test_admin_unit_of_work_is_one_transaction(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    slug = make_tenant()
    ran: list[str] = []
    with pytest.raises(RuntimeError), db.admin() as admin:
        admin.workspaces.create(slug, "research")
        admin.tenants.rename(slug, "Renamed")
        admin.on_commit(lambda: ran.append("admin"))
        raise RuntimeError("undo both")
    with db.admin() as admin:
        assert [w.slug for w in admin.workspaces.list(slug)] == ["default"]
        assert admin.tenants.get(slug).name != "Renamed"
        admin.on_commit(lambda: ran.append("committed"))
    assert ran == ["committed"]


def _versions(db: Database, tenant: str, state_id: str) -> list[int]:
    with db.unit_of_work(tenant=tenant) as uow:
        return [v.version for v in uow.states.list_versions(state_id).items]


@pytest.mark.parametrize("fails", [False, True])
def test_fast_path_core_and_session_share_one_transaction(
    db: Database, probe: str, tenant: str, fails: bool
) -> None:
    """State saves (prepared statements on the driver on PostgreSQL), Core statements
    and ORM-session work, in any order and around savepoints, commit or roll back as
    one transaction."""
    with pytest.raises(RuntimeError) if fails else _nothing(), db.unit_of_work(tenant) as uow:
        uow.states.save("mixed", {"n": 1})  # before any session exists
        uow.states.list_versions("mixed")  # Core on the connection
        with pytest.raises(ValueError), uow.savepoint():  # the session starts here
            uow.states.save("mixed", {"n": 2})
            write(uow, "inner")
            raise ValueError("undo the savepoint only")
        write(uow, "outer")
        uow.states.save("mixed", {"n": 3})
        if fails:
            raise RuntimeError("roll everything back")
    if fails:
        assert notes(db, tenant) == [] and _versions(db, tenant, "mixed") == []
    else:
        assert notes(db, tenant) == ["outer"]
        # version 2 was rolled back with its savepoint; its number is taken again
        assert _versions(db, tenant, "mixed") == [2, 1]
        with db.unit_of_work(tenant) as uow:
            loaded = uow.states.load("mixed")
        assert loaded is not None and loaded.state == {"n": 3}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_read_only_unit_of_work_refuses_writes_and_leaves_the_connection_writable(
    db: Database, probe: str, tenant: str
) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("ro", {"n": 1})
    with pytest.raises(ReadOnlyError), db.unit_of_work(tenant, read_only=True) as uow:
        loaded = uow.states.load("ro")
        assert loaded is not None and loaded.state == {"n": 1}
        uow.states.save("ro", {"n": 2})
    with pytest.raises(ReadOnlyError), db.unit_of_work(tenant, read_only=True) as uow:
        uow.store("s")["k"] = 1
    with (
        pytest.raises(ReadOnlyError),
        db.unit_of_work(tenant, read_only=True) as uow,
        translate_errors(),
    ):
        write(uow, "refused")
    assert notes(db, tenant) == []
    # the pooled connections are writable again for the next units of work
    for n in range(3):
        with db.unit_of_work(tenant) as uow:
            uow.states.save("ro", {"n": 10 + n})
    with db.unit_of_work(tenant) as uow:
        loaded = uow.states.load("ro")
        assert loaded is not None and loaded.state == {"n": 12} and loaded.meta.version == 4


def test_read_only_unit_of_work_reads_one_snapshot(db_pg: Database) -> None:
    tenant = unique_slug()
    with db_pg.admin() as admin:
        admin.tenants.create(tenant)
    with db_pg.unit_of_work(tenant) as uow:
        uow.states.save("snap", {"n": 1})
    with db_pg.unit_of_work(tenant, read_only=True) as reader:
        first = reader.states.load("snap")
        with db_pg.unit_of_work(tenant) as writer:  # commits while the reader is open
            writer.states.save("snap", {"n": 2})
            writer.states.save("other", {"n": 1})
        again = reader.states.load("snap")
        assert reader.states.load("other") is None
    assert first is not None and again is not None
    assert again.meta.version == first.meta.version == 1 and again.state == {"n": 1}
    with db_pg.unit_of_work(tenant) as uow:  # an ordinary unit of work sees both
        latest = uow.states.load("snap")
        assert latest is not None and latest.meta.version == 2
