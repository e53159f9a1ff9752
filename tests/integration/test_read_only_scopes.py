"""Read-only scopes are refused writes by the database, not only by the API: a read-only
token's every INSERT, UPDATE and DELETE fails in the policies (25006), even in a
read-write transaction that SQL of the caller's own opened after leaving the unit of
work's read-only one. (Every public write method through a read-only scope raising
ReadOnlyError is test_read_only_probe.py's, for units of work and descriptors.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database
from persistence.errors import ReadOnlyError
from tests.fixtures.scopes import SETTING, enter, token
from tests.fixtures.services import PostgresTarget

WRITES = {
    "insert": "INSERT INTO stores (tenant_id, workspace_id, name, created_at) "
    "SELECT tenant_id, workspace_id, 'evil', now() FROM stores LIMIT 1",
    "update": "UPDATE store_items SET value = '1'",
    "delete": "DELETE FROM store_items",
    "upsert": "INSERT INTO stores (tenant_id, workspace_id, name, created_at) "
    "SELECT tenant_id, workspace_id, name, now() FROM stores "
    "ON CONFLICT (tenant_id, workspace_id, name) DO UPDATE SET created_at = now()",
}


@pytest.fixture
def seeded(pg_db: Database, make_tenant: Callable[..., str]) -> str:
    tenant = make_tenant()
    store = pg_db.store(tenant, "memory")
    store["a"], store["b"] = 1, 2
    return tenant


@pytest.fixture
def runtime(postgres: PostgresTarget) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        yield conn


def _items(pg_db: Database, tenant: str) -> dict[str, Any]:
    return dict(pg_db.store(tenant, "memory").items())


@pytest.fixture
def db(db_pg: Database) -> Database:
    return db_pg  # (make_tenant's database: PostgreSQL, both APIs)


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_read_only_token_refuses_raw_writes_on_a_plain_connection(
    pg_db: Database, seeded: str, runtime: psycopg.Connection[Any], write: str
) -> None:
    enter(runtime, token(pg_db, seeded, read_only=True))
    assert runtime.execute("SELECT count(*) FROM store_items").fetchone() == (2,)  # it reads
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="scope is read-only"):
        runtime.execute(WRITES[write])
    enter(runtime, token(pg_db, seeded))  # the same write with a read-write token: allowed
    runtime.execute(WRITES[write])
    runtime.rollback()
    assert _items(pg_db, seeded) == {"a": 1, "b": 2}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_read_only_unit_of_work_is_refused_writes_after_leaving_its_transaction(
    db: Database, pg_db: Database, seeded: str, write: str
) -> None:
    """SQL of the caller's own copies the read-only scope token into the session, ends
    the READ ONLY transaction and opens a read-write one: the policies still refuse."""
    refused = pytest.raises(ReadOnlyError, match="scope is read-only")
    with refused, db.unit_of_work(seeded, read_only=True) as uow:
        session = uow.session
        session.execute(
            text(f"SELECT set_config('{SETTING}', current_setting('{SETTING}'), false)")
        )
        session.execute(text("COMMIT"))
        session.execute(text("BEGIN READ WRITE"))
        session.execute(text(WRITES[write]))
    assert _items(pg_db, seeded) == {"a": 1, "b": 2}
