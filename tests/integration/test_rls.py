"""Row-level security in PostgreSQL, checked with raw SQL as the runtime role."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from persistence import Database
from persistence.errors import ConfigurationError, TenantIsolationError, translate_errors
from persistence.scopes import parse
from tests.conftest import new_tenant
from tests.fixtures.scopes import SETTING, enter, token
from tests.fixtures.services import PostgresTarget
from tests.integration import test_tenancy, test_uow

probe = test_uow.probe  # the probe-table fixture, reused here on PostgreSQL


@pytest.fixture
def db(db_pg: Database) -> Database:
    """These tests are about PostgreSQL only, on both APIs (``make_tenant`` uses this
    ``db``)."""
    return db_pg


@pytest.fixture
def runtime(postgres: PostgresTarget) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        yield conn


def tenant_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table of the schema with a ``tenant_id`` column, from the catalog."""
    rows = conn.execute(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' "
        "AND t.table_type = 'BASE TABLE' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def tenant_id(db: Database, slug: str) -> str:
    with db.admin() as admin:
        return str(admin.tenants.get(slug).id)


def test_runtime_role_sees_only_the_tenant_set(
    db: Database, make_tenant: Callable[..., str], runtime: psycopg.Connection[Any]
) -> None:
    a, b = make_tenant("research"), make_tenant("research")
    a_id, b_id = tenant_id(db, a), tenant_id(db, b)
    for slug in (a, b):  # rows in every aggregate's tables for both tenants
        test_tenancy.populate(db, slug)

    enter(runtime, token(db, a, "research"))  # (populate wrote in "research")
    assert runtime.execute("SELECT slug FROM tenants").fetchall() == [(a,)]
    for table in ("state_versions", "workflows", "artifacts", "runs", "store_items"):
        query = sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(
            sql.Identifier(table)
        )
        assert runtime.execute(query, (a_id,)).fetchone() != (0,), table  # A sees its own
        assert runtime.execute(query, (b_id,)).fetchone() == (0,), table  # never B's
    workspaces = runtime.execute("SELECT tenant_id::text, slug FROM workspaces ORDER BY slug")
    assert workspaces.fetchall() == [(a_id, "research")]  # its own workspace only
    for table in tenant_tables(runtime):
        query = sql.SQL("SELECT count(*) FROM {} WHERE tenant_id <> %s").format(
            sql.Identifier(table)
        )
        assert runtime.execute(query, (a_id,)).fetchone() == (0,), table
    assert runtime.execute("SELECT count(*) FROM tenants WHERE id = %s", (b_id,)).fetchone() == (0,)

    enter(runtime, token(db, b))
    assert runtime.execute("SELECT slug FROM tenants").fetchall() == [(b,)]
    assert runtime.execute("SELECT slug FROM workspaces").fetchall() == [("default",)]
    assert runtime.execute("SELECT count(*) FROM state_versions").fetchone() == (0,)


def test_no_tenant_setting_sees_zero_rows(
    make_tenant: Callable[..., str], runtime: psycopg.Connection[Any]
) -> None:
    make_tenant("research")
    enter(runtime, None)
    tables = ["tenants", *tenant_tables(runtime)]
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        assert runtime.execute(query).fetchone() == (0,), table
    # An empty setting (what persistence_enter() leaves for a suspended tenant) too.
    enter(runtime, "")
    assert runtime.execute("SELECT count(*) FROM workspaces").fetchone() == (0,)


def insertable_tables(conn: psycopg.Connection[Any], role: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT table_name FROM information_schema.role_table_grants "
        "WHERE grantee = %s AND privilege_type = 'INSERT' AND table_schema = current_schema()",
        (role,),
    ).fetchall()
    return sorted(set(tenant_tables(conn)) & {r[0] for r in rows})


def test_writing_a_row_for_another_tenant_is_refused(
    db: Database,
    make_tenant: Callable[..., str],
    runtime: psycopg.Connection[Any],
    postgres: PostgresTarget,
) -> None:
    a, b = make_tenant("research"), make_tenant("research")
    b_id = tenant_id(db, b)
    # Every table the runtime role may insert into: a row for B under A's setting is
    # refused by the policy's WITH CHECK (checked before NOT NULL constraints).
    insertable = insertable_tables(runtime, postgres.runtime_role)
    # The runtime role writes every data table (the role set-up grants them all) ...
    assert set(insertable) == set(tenant_tables(runtime)) - {"workspaces"}
    scope = token(db, a)
    for table in insertable:
        enter(runtime, scope)
        query = sql.SQL("INSERT INTO {} (tenant_id) VALUES (%s)").format(sql.Identifier(table))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            runtime.execute(query, (b_id,))
    # Tenants and workspaces are written only by the owner: the runtime role may not.
    enter(runtime, scope)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        runtime.execute(
            "INSERT INTO workspaces (tenant_id, id, slug, name, created_at, updated_at) "
            "VALUES (%s, gen_random_uuid(), 'evil', 'evil', now(), now())",
            (b_id,),
        )
    enter(runtime, scope)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        runtime.execute("UPDATE tenants SET name = 'evil' WHERE id = %s", (b_id,))
    runtime.rollback()
    with db.admin() as admin:
        assert [w.slug for w in admin.workspaces.list(b)] == ["default", "research"]
        assert admin.tenants.get(b).name == f"Tenant {b}"


# This test and the next read the catalog with no API call: nothing differs between APIs.
def test_catalog_every_tenant_table_has_forced_rls(
    runtime: psycopg.Connection[Any], postgres: PostgresTarget
) -> None:
    tables = ["tenants", *tenant_tables(runtime)]
    assert "workspaces" in tables
    flags = dict(
        (name, (rls, force))
        for name, rls, force in runtime.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
        ).fetchall()
    )
    policies = runtime.execute(
        "SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname = current_schema()"
    ).fetchall()
    commands = {
        "scope_read": "SELECT",
        "scope_insert": "INSERT",
        "scope_update": "UPDATE",
        "scope_delete": "DELETE",
    }
    for table in tables:
        assert flags[table] == (True, True), f"{table}: RLS not enabled and forced"
        mine = {p[1]: p for p in policies if p[0] == table}
        assert set(mine) == {*commands, "owner_access"}, table
        for name, cmd in commands.items():
            _, _, command, qual, with_check = mine[name]
            assert command == cmd
            writing = name != "scope_read"
            for expression in (qual, with_check):
                # Only the verified scope, once per statement (an uncorrelated sub-select),
                # read-write for a write: never a bare setting anyone can SET.
                if expression is not None:
                    assert f"persistence_scope({str(writing).lower()})" in expression, table
                    assert "current_setting" not in expression, table
    # Nothing but the verifier reads the scope setting: no policy, no other function.
    readers = runtime.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace "
        "AND prosrc LIKE '%%persistence.scope%%' ORDER BY 1"
    ).fetchall()
    assert readers == [("persistence_enter",), ("persistence_scope",)]


def test_runtime_role_is_neither_owner_nor_superuser(
    runtime: psycopg.Connection[Any], postgres: PostgresTarget
) -> None:
    row = runtime.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row == (False, False)
    owned = runtime.execute(
        "SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole"
    ).fetchone()
    assert owned == (0,)


def _session_state(uow: Any) -> tuple[int, str]:
    """The backend and the tenant id (hex) of the scope token set, or ''."""
    row = uow.session.execute(
        text(f"SELECT pg_backend_pid(), current_setting('{SETTING}', true)")
    ).one()
    return int(row[0]), parse(row[1]).tenant if row[1] else ""


def test_setting_never_leaks_across_units_of_work_on_one_connection(
    postgres: PostgresTarget,
    pg_db: Database,
    open_database: Callable[..., Database],
) -> None:
    a, b = new_tenant(pg_db), new_tenant(pg_db)
    a_id, b_id = tenant_id(pg_db, a), tenant_id(pg_db, b)
    with open_database(
        postgres.runtime_url, owner_url=postgres.owner_url, pool_size=1, max_overflow=0
    ) as db:
        pids = set()
        for a_fails in (False, True):  # after a commit, then after a rollback
            expected: AbstractContextManager[Any] = (
                pytest.raises(RuntimeError) if a_fails else nullcontext()
            )
            with expected, db.unit_of_work(tenant=a) as uow:
                pid, setting = _session_state(uow)
                assert setting == uuid.UUID(a_id).hex
                pids.add(pid)
                if a_fails:
                    raise RuntimeError("roll back")
            with db.unit_of_work(tenant=b) as uow:
                pid, setting = _session_state(uow)
                pids.add(pid)
                assert setting == uuid.UUID(b_id).hex
                seen = uow.session.execute(text("SELECT id FROM tenants")).scalars().all()
                assert [str(x) for x in seen] == [b_id]
            with db.engine.connect() as conn:  # the same pooled connection, outside any uow
                row = conn.execute(
                    text(f"SELECT pg_backend_pid(), current_setting('{SETTING}', true)")
                ).one()
                pids.add(row[0])
                assert row[1] in ("", None)
                assert conn.execute(text("SELECT count(*) FROM workspaces")).scalar() == 0
        assert len(pids) == 1, "the pool of one must reuse one server backend"


def test_a_unit_of_work_cannot_write_rows_of_another_tenant(
    db: Database, make_tenant: Callable[..., str], probe: str
) -> None:
    a, b = make_tenant(), make_tenant()
    b_id = uuid.UUID(tenant_id(db, b))
    insert = text(f"INSERT INTO {probe} (tenant_id, note) VALUES (:t, 'x')")
    refused = pytest.raises(TenantIsolationError, match="another tenant")
    with refused as info, db.unit_of_work(tenant=a) as uow, translate_errors():
        uow.session.execute(insert, {"t": b_id})
    assert info.value.table == probe and repr(probe) in str(info.value)
    cause = info.value.__cause__
    assert isinstance(getattr(cause, "orig", None), psycopg.errors.InsufficientPrivilege)
    with db.unit_of_work(tenant=b) as uow:
        rows = uow.session.execute(text(f"SELECT count(*) FROM {probe}")).scalar()
    assert rows == 0


def test_refusals_of_the_runtime_role_are_told_apart(
    db: Database, make_tenant: Callable[..., str], probe: str
) -> None:
    """Both are SQLSTATE 42501: a row refused by RLS (here: no tenant set, a connection
    outside any unit of work) is a TenantIsolationError; a missing GRANT stays a
    ConfigurationError."""
    a_id = uuid.UUID(tenant_id(db, make_tenant()))
    insert = text(f"INSERT INTO {probe} (tenant_id, note) VALUES (:t, 'x')")
    update = text("UPDATE tenants SET name = 'evil' WHERE id = :t")  # no UPDATE grant
    with db.engine.connect() as conn:  # the runtime role, no tenant setting
        refused = pytest.raises(TenantIsolationError, match="no tenant is set")
        with refused as info, translate_errors():
            conn.execute(insert, {"t": a_id})
        assert info.value.table == probe
        conn.rollback()
        denied = pytest.raises(ConfigurationError, match="permission denied")
        with denied as configuration, translate_errors():
            conn.execute(update, {"t": a_id})
        assert not isinstance(configuration.value, TenantIsolationError)
        conn.rollback()
