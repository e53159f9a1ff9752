"""States schema: O(1) loads at 10,000 versions, RLS as the runtime role, cascades, drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import Uuid, bindparam, text

from persistence import Database
from persistence.migrations import diff
from tests.conftest import new_tenant
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import recorded

STATE_TABLES = ("state_heads", "state_versions", "state_tags", "state_checkpoints")


def _grow_to(pg_db: Database, tenant_id: Any, state_id: str, versions: int) -> None:
    """Copy version 1 into versions 2..N in one statement, as the owner (fast set-up)."""
    with pg_db.owner_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO state_versions (tenant_id, workspace_id, state_id, version, "
                "parent_version, created_at, expires_at, raw_size, stored_size, codec, checksum, "
                "tags, metadata, payload) "
                "SELECT tenant_id, workspace_id, state_id, g, g - 1, created_at, expires_at, "
                "raw_size, stored_size, codec, checksum, tags, metadata, payload "
                "FROM state_versions, generate_series(2, :n) AS g "
                "WHERE tenant_id = :t AND state_id = :s AND version = 1"
            ),
            {"n": versions, "t": tenant_id, "s": state_id},
        )
        conn.execute(
            text(
                "UPDATE state_heads SET last_version = :n, latest_version = :n, "
                "parent_version = :n - 1 WHERE tenant_id = :t AND state_id = :s"
            ),
            {"n": versions, "t": tenant_id, "s": state_id},
        )
        conn.execute(text("ANALYZE state_versions"))
        conn.execute(text("ANALYZE state_heads"))


def test_load_latest_issues_the_same_statements_at_10000_versions(db_pg: Database) -> None:
    tenant = new_tenant(db_pg)
    with db_pg.unit_of_work(tenant) as uow:
        uow.states.save("one", {"value": 1})
        uow.states.save("many", {"value": 1})
        tenant_id = uow.tenant.id
    _grow_to(db_pg, tenant_id, "many", 10_000)
    with db_pg.unit_of_work(tenant) as uow:
        with recorded(db_pg) as one:
            small = uow.states.load("one")
        with recorded(db_pg) as many:
            big = uow.states.load("many")
        plan = "\n".join(
            row[0]
            for row in uow.session.connection().exec_driver_sql("EXPLAIN " + many[0][0], many[0][1])
        )
    assert small is not None and big is not None
    assert (small.meta.version, big.meta.version) == (1, 10_000)
    assert big.state == {"value": 1}
    assert len(one) == len(many) == 1
    assert one[0][0] == many[0][0]  # the same SQL, only the state id differs
    assert "Seq Scan on state_versions" not in plan, plan
    assert "pk_state_versions" in plan, plan


def _raw(postgres: PostgresTarget, which: str) -> psycopg.Connection[Any]:
    return psycopg.connect(postgres.psycopg_url(which))


def test_rls_hides_other_tenants_states_from_raw_sql(
    db_pg: Database, postgres: PostgresTarget
) -> None:
    alpha, beta = new_tenant(db_pg), new_tenant(db_pg)
    with db_pg.unit_of_work(alpha) as uow:
        uow.states.save("secret", {"of": "alpha"}, tags=["t"])
        uow.states.create_checkpoint("secret", "cp")
        alpha_id = uow.tenant.id
    with db_pg.unit_of_work(beta) as uow:
        uow.states.save("mine", {"of": "beta"}, tags=["t"])
    with _raw(postgres, "runtime") as conn:
        conn.execute("SELECT * FROM persistence_enter(%s)", (token(db_pg, beta),))
        for table in STATE_TABLES:
            hidden = conn.execute(
                f"SELECT count(*) FROM {table} WHERE tenant_id = %s", (alpha_id,)
            ).fetchone()
            assert hidden == (0,), table
        visible = conn.execute("SELECT state_id FROM state_heads").fetchall()
        assert visible == [("mine",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "UPDATE state_heads SET tenant_id = %s WHERE state_id = 'mine'", (alpha_id,)
            )
        conn.rollback()
        for table in STATE_TABLES:  # no tenant entered: nothing at all
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_tenant_and_workspace_delete_cascade_states(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    slug = make_tenant("research")
    for workspace in ("default", "research"):
        with db.unit_of_work(slug, workspace) as uow:
            uow.states.save("s", {"a": 1}, tags=["x"])
            uow.states.save("s", {"a": 2}, tags=["y"])
            uow.states.create_checkpoint("s", "cp")
            tenant_id = uow.tenant.id

    def remaining() -> dict[str, int]:
        with db.owner_engine.connect() as conn:
            return {
                table: conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t").bindparams(
                        bindparam("t", tenant_id, type_=Uuid())
                    )
                ).scalar_one()
                for table in STATE_TABLES
            }

    counts = remaining()
    assert counts == {
        "state_heads": 2,
        "state_versions": 4,
        "state_tags": 4,
        "state_checkpoints": 2,
    }
    with db.admin() as admin:
        admin.workspaces.delete(slug, "research")
    assert remaining()["state_versions"] == 2
    with db.admin() as admin:
        admin.tenants.delete(slug)
    assert set(remaining().values()) == {0}


# The schema (Alembic's diff on a sync engine): one for both APIs.
def test_models_match_the_migration(sync_db: Database) -> None:
    drift = [d for d in diff(sync_db.owner_engine) if "state" in repr(d)]
    assert drift == []
