"""A tenant unit of work never runs on a role that row-level security does not bind
(superuser, BYPASSRLS, owner of the tables or a member of it) unless the user opted in;
administration and migrations, which run as the owner, keep working; the runtime-role
set-up refuses such roles (API and CLI)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from persistence import Database, Settings, _role_check
from persistence.errors import ConfigurationError
from tests.conftest import unique_slug
from tests.fixtures.services import PostgresTarget
from tests.integration import test_cli, test_migrations

invoke = test_cli.invoke  # the CLI in-process
empty_pg = test_migrations.empty_pg  # a throwaway database owned by the owner role

#: Each role RLS does not bind, and how the refusal names it.
UNBOUND = {
    "superuser": "is a superuser",
    "bypassrls": "has BYPASSRLS",
    "owner": "owns the tenant tables",
    "owner-member": "is a member of",
}


@pytest.fixture
def db(pg_db: Database) -> Database:
    """PostgreSQL only (``make_tenant`` creates tenants through it)."""
    return pg_db


def _admin(postgres: PostgresTarget, sql: str) -> list[Any]:
    """Run ``sql`` as the set-up superuser (roles only: never a runtime query)."""
    with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def unbound_url(request: pytest.FixtureRequest, postgres: PostgresTarget) -> Iterator[str]:
    """A URL of the kind of role ``request.param`` names (a key of UNBOUND)."""
    kind = request.param
    if kind in ("superuser", "owner"):
        yield postgres.admin_url if kind == "superuser" else postgres.owner_url
        return
    role = f"ptest_unbound_{uuid.uuid4().hex[:8]}"
    # Members of the runtime role (its grants) or of the owner role (it owns the tables).
    attrs, parent = (
        ("BYPASSRLS", postgres.runtime_role) if kind == "bypassrls" else ("", postgres.owner_role)
    )
    _admin(postgres, f'CREATE ROLE "{role}" LOGIN {attrs} IN ROLE "{parent}"')
    try:
        yield make_url(postgres.runtime_url).set(username=role).render_as_string(False)
    finally:
        _admin(postgres, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize("unbound_url", list(UNBOUND), indirect=True)
def test_a_role_rls_does_not_bind_runs_no_tenant_unit_of_work(
    unbound_url: str,
    postgres: PostgresTarget,
    make_tenant: Callable[..., str],
    request: pytest.FixtureRequest,
    open_database: Callable[..., Database],
) -> None:
    tenant, why = make_tenant(), UNBOUND[request.node.callspec.params["unbound_url"]]
    with open_database(unbound_url, owner_url=postgres.owner_url) as db:
        for _ in range(2):  # the verdict is kept for the connection: refused every time
            with pytest.raises(ConfigurationError) as refused, db.unit_of_work(tenant):
                pytest.fail("a tenant unit of work ran on a role RLS does not bind")
            message = str(refused.value)
            assert why in message
            assert "persistence db create-runtime-role" in message
            assert "PERSISTENCE_ALLOW_RLS_BYPASS" in message
        with db.admin() as admin:  # administration (on the owner URL) is not affected
            assert admin.tenants.get(tenant).slug == tenant
    # The documented opt-in, for development: the same role now works.
    opted_in = open_database(unbound_url, owner_url=postgres.owner_url, allow_rls_bypass=True)
    with opted_in, opted_in.unit_of_work(tenant) as uow:
        uow.states.save("plan", {"step": 1})
        loaded = uow.states.load("plan")
        assert loaded is not None and loaded.state == {"step": 1}


def test_the_runtime_role_is_checked_once_per_connection(
    postgres: PostgresTarget,
    make_tenant: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    open_database: Callable[..., Database],
) -> None:
    tenant, checks = make_tenant(), []
    real = _role_check._verdict

    def counted(driver: Any) -> str:  # (on asyncio, the AsyncConnection seen as blocking)
        checks.append(driver.pgconn.backend_pid)
        return real(driver)

    monkeypatch.setattr(_role_check, "_verdict", counted)
    with open_database(postgres.runtime_url, pool_size=2, max_overflow=0) as db:
        for _ in range(5):
            with db.unit_of_work(tenant) as uow:
                uow.states.save("plan", {"n": 1})
        assert len(checks) == 1  # one pooled connection, one check: not per unit of work
        with db.unit_of_work(tenant), db.unit_of_work(tenant):
            pass
        assert len(set(checks)) == len(checks) == 2  # the second connection, once


def test_only_an_owner_url_administers_and_migrates(
    postgres: PostgresTarget,
    monkeypatch: pytest.MonkeyPatch,
    open_database: Callable[..., Database],
) -> None:
    monkeypatch.delenv("PERSISTENCE_DATABASE_URL", raising=False)
    slug = unique_slug()
    with open_database(Settings(owner_database_url=postgres.owner_url)) as db:
        db.migrate()  # at head already: runs, changes nothing
        assert db.current_revision() == db.head_revision()
        with db.admin() as admin:
            admin.tenants.create(slug)
        refused = pytest.raises(ConfigurationError, match="owns the tenant tables")
        with refused, db.unit_of_work(slug):
            pass


def test_a_connection_opened_before_the_tables_exist_is_checked_again(
    empty_pg: str, open_database: Callable[..., Database]
) -> None:
    with open_database(empty_pg, pool_size=1, max_overflow=0) as db:
        assert db.current_revision() is None
        with db.engine.connect():  # the pool's one connection: checked, no tables yet
            pass
        db.migrate()
        with db.admin() as admin:
            admin.tenants.create("early")
        owner_now = pytest.raises(ConfigurationError, match="owns the tenant tables")
        with owner_now, db.unit_of_work("early"):  # the same connection, the tables exist
            pass


def _a_superuser(postgres: PostgresTarget) -> str:
    rows = _admin(postgres, "SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY oid LIMIT 1")
    return str(rows[0][0])


def test_the_runtime_role_set_up_refuses_roles_rls_does_not_bind(
    postgres: PostgresTarget, db_pg: Database
) -> None:
    refused = {
        postgres.owner_role: "the owner of the tables",
        _a_superuser(postgres): "a superuser",
    }
    for role, why in refused.items():
        for execute in (True, False):
            with pytest.raises(ConfigurationError, match="row-level security would not") as info:
                db_pg.grant_runtime_role(role, execute=execute)
            assert why in str(info.value)
    with pytest.raises(ConfigurationError, match="does not exist"):
        db_pg.grant_runtime_role(f"ptest_nobody_{uuid.uuid4().hex[:8]}", create=False)
    assert db_pg.grant_runtime_role(postgres.runtime_role, create=False)  # still fine


def test_an_owner_without_createrole_is_told_the_fix(
    postgres: PostgresTarget, empty_pg: str, open_database: Callable[..., Database]
) -> None:
    """The owner of ``empty_pg`` may create roles; a plain owner may not."""
    owner = f"ptest_plain_owner_{uuid.uuid4().hex[:8]}"
    database = make_url(empty_pg).database
    _admin(postgres, f'CREATE ROLE "{owner}" LOGIN NOCREATEROLE')
    try:
        _admin(postgres, f'ALTER DATABASE "{database}" OWNER TO "{owner}"')
        url = make_url(empty_pg).set(username=owner).render_as_string(False)
        with open_database(url) as db:  # no tables: the role is created first
            with pytest.raises(ConfigurationError, match="CREATEROLE") as info:
                db.grant_runtime_role(f"ptest_app_{uuid.uuid4().hex[:8]}")
            assert "--no-create" in str(info.value)
    finally:
        _admin(postgres, f'ALTER DATABASE "{database}" OWNER TO "{postgres.owner_role}"')
        _admin(postgres, f'DROP ROLE IF EXISTS "{owner}"')


# The CLI exists on the sync API only (its commands run a Database).
def test_the_cli_refuses_them_and_administers_with_only_the_owner_url(
    invoke: test_cli.Cli, postgres: PostgresTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PERSISTENCE_DATABASE_URL", "PERSISTENCE_OWNER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    owner = ["--owner-url", postgres.owner_url]
    for role in (postgres.owner_role, _a_superuser(postgres)):
        error = invoke(*owner, "db", "create-runtime-role", role).one_line_error()
        assert f"role {role!r} is" in error and "row-level security would not" in error
    nobody = f"ptest_nobody_{uuid.uuid4().hex[:8]}"
    missing = invoke(*owner, "db", "create-runtime-role", nobody, "--no-create")
    assert "does not exist" in missing.one_line_error()

    current = invoke(*owner, "--json", "db", "current").json()
    assert current["current"] == current["head"]
    slug = unique_slug()
    assert invoke(*owner, "--json", "tenant", "create", slug).json()["slug"] == slug
    assert slug in [t["slug"] for t in invoke(*owner, "--json", "tenant", "list").json()]
    for command in (["state", "list", "--tenant", slug], ["demo"]):  # tenant units of work
        error = invoke(*owner, *command).one_line_error()
        assert "owns the tenant tables" in error and "create-runtime-role" in error
