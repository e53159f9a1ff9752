"""Attacks on the scopes, as the runtime role (never a superuser): SQL inside a unit of
work of tenant A, workspace W (through ``uow.session``), and on a plain runtime
connection, tries every way we know to reach other data: every ``persistence.*``
setting set or ``SET``, forged, truncated, re-signed, edited, expired and slug tokens,
our functions called for other scopes, a suspended tenant, A's other workspace. After
each, a catalog-driven count of the rows of other scopes in every table with a tenant
column finds none (a refused attack reaches none either)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from persistence import Database
from persistence.scopes import ScopeKey, mint
from tests.conftest import new_tenant
from tests.fixtures.scopes import SETTING
from tests.fixtures.services import SCOPE_KEY, PostgresTarget
from tests.integration.test_rls import tenant_tables
from tests.integration.test_tenancy import populate


@dataclass(frozen=True)
class World:
    a: uuid.UUID  # the attacker's tenant ...
    w: uuid.UUID  # ... and workspace (A's "default")
    w2: uuid.UUID  # A's other workspace ("research")
    b: uuid.UUID  # another tenant
    b_w: uuid.UUID
    s: uuid.UUID  # a suspended tenant
    s_w: uuid.UUID
    slugs: dict[str, str]


@pytest.fixture(scope="module")
def world(pg_db: Database) -> World:
    a, b, s = new_tenant(pg_db), new_tenant(pg_db), new_tenant(pg_db)
    with pg_db.admin() as admin:
        admin.workspaces.create(a, "research")
    for tenant in (a, b, s):
        for workspace in ("default", "research") if tenant == a else ("default",):
            populate(pg_db, tenant, workspace)
    with pg_db.admin() as admin:
        admin.tenants.suspend(s)
        got = {t: admin.tenants.get(t).id for t in (a, b, s)}
        ws = {(t, w.slug): w.id for t in (a, b, s) for w in admin.workspaces.list(t)}
    return World(
        a=got[a],
        w=ws[a, "default"],
        w2=ws[a, "research"],
        b=got[b],
        b_w=ws[b, "default"],
        s=got[s],
        s_w=ws[s, "default"],
        slugs={"a": a, "b": b, "s": s},
    )


def _others(
    world: World, tables: list[str], workspaced: set[str], *, every_row: bool = False
) -> sql.Composable:
    """One query: per table, the rows that are not the attacker's scope's (``every_row``:
    all of them)."""
    parts = []
    for table in tables:
        if every_row:
            where = sql.SQL("true")
        elif table == "tenants":
            where = sql.SQL("id <> {a}")
        elif table == "workspaces":
            where = sql.SQL("NOT (tenant_id = {a} AND id = {w})")
        elif table in workspaced:
            where = sql.SQL("NOT (tenant_id = {a} AND workspace_id = {w})")
        else:  # a tenant's rows: any workspace of A may see them
            where = sql.SQL("tenant_id <> {a}")
        parts.append(
            sql.SQL("SELECT {name}, count(*) FROM {table} WHERE ").format(
                name=sql.Literal(table), table=sql.Identifier(table)
            )
            + where.format(a=sql.Literal(str(world.a)), w=sql.Literal(str(world.w)))
        )
    return sql.SQL(" UNION ALL ").join(parts)


def _tables(conn: psycopg.Connection[Any]) -> tuple[list[str], set[str]]:
    tables = ["tenants", *tenant_tables(conn)]
    workspaced = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND column_name = 'workspace_id'"
        )
    }
    return tables, workspaced


def _token(key: ScopeKey, tenant: uuid.UUID, workspace: uuid.UUID, **claims: Any) -> str:
    claims.setdefault("expires", int(time.time()) + 600)
    return mint(key, tenant, workspace, **claims)


SET_CONFIG = "SELECT set_config(%s, %s, %s)"
ENTER = "SELECT * FROM persistence_enter(%s)"


def _edited(token: str, field: int, value: str) -> str:
    parts = token.split(".")
    parts[field] = value
    return ".".join(parts)


def attacks(world: World, key: ScopeKey, owner: str) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(what, SQL, parameters): each an attempt to widen the scope, as the runtime role."""
    own = _token(key, world.a, world.w)
    stranger = ScopeKey("test", b"\x01" * 32)  # the right key id, a wrong secret
    tokens = {
        "B's scope, signed with another key": _token(stranger, world.b, world.b_w),
        "B's scope, key id of the real key, empty secret": _token(
            ScopeKey(key.id, b"\0" * 16), world.b, world.b_w
        ),
        "B's scope, guessed key 'secret'": _token(
            ScopeKey(key.id, b"secret".ljust(16, b"\0")), world.b, world.b_w
        ),
        "A's own token, truncated": own[:-1],
        "A's own token, half": own[: len(own) // 2],
        "A's own token, its tenant replaced by B's": _edited(own, 3, world.b.hex),
        "A's own token, its workspace replaced by W2": _edited(own, 4, world.w2.hex),
        "A's own token, its expiry moved on": _edited(own, 6, str(int(time.time()) + 10**6)),
        "A/W2, expired": _token(key, world.a, world.w2, expires=int(time.time()) - 1),
        "B by slug, signed with another key": mint(
            stranger, world.slugs["b"], "default", expires=int(time.time()) + 600
        ),
        "the suspended tenant S, validly signed": _token(key, world.s, world.s_w),
        "garbage": "p1.x.y",
        "B's tenant id as a token": str(world.b),
    }
    found: list[tuple[str, str, tuple[Any, ...]]] = []
    for name in ("persistence.tenant_id", "persistence.workspace_id"):
        for value in (str(world.b), str(world.w2)):
            found.append((f"set_config {name}", "SELECT set_config(%s, %s, false)", (name, value)))
            found.append((f"SET {name}", f"SET {name} = '{value}'", ()))
    for what, token in tokens.items():
        for local in (True, False):
            found.append(
                (
                    f"set_config scope: {what}",
                    "SELECT set_config(%s, %s, %s)",
                    (SETTING, token, local),
                )
            )
        found.append((f"SET scope: {what}", f"SET {SETTING} = '{token}'", ()))
        found.append((f"SET LOCAL scope: {what}", f"SET LOCAL {SETTING} = '{token}'", ()))
        found.append(
            (f"persistence_enter: {what}", "SELECT * FROM persistence_enter(%s)", (token,))
        )
    # A slug token signed with the real key is B's scope for the entry to resolve (a
    # capability for B, not an attack on it); the policies never take one as a scope.
    by_slug = mint(key, world.slugs["b"], "default", expires=int(time.time()) + 600)
    for local in (True, False):
        found.append(("set_config: B by slug", SET_CONFIG, (SETTING, by_slug, local)))
    for writing in (False, True):
        found.append(("persistence_scope", "SELECT persistence_scope(%s)", (writing,)))
    found += [
        ("RESET the scope", f"RESET {SETTING}", ()),
        ("row_security off", "SET row_security = off", ()),
        ("SET ROLE to the owner", f'SET ROLE "{owner}"', ()),
        ("SET SESSION AUTHORIZATION", f'SET SESSION AUTHORIZATION "{owner}"', ()),
        ("search_path to pg_catalog", "SET search_path = pg_catalog, public", ()),
    ]
    return found


def _reached(conn: Any, query: str, world: World) -> dict[str, int]:
    return {table: count for table, count in conn.execute(query).fetchall() if count}


def _entered_rows(result: Any, world: World) -> int:
    """Rows of other scopes ``persistence_enter`` handed back (its name column: data)."""
    return sum(1 for row in result if row[0] != world.a and row[2] is not None)


class _Attacker:
    """Runs an attack inside a savepoint on ``cursor`` (a psycopg connection or a uow's
    driver connection), counts what it reached, and rolls the attack back."""

    def __init__(self, conn: Any, world: World, query: str):
        self.conn, self.world, self.query = conn, world, query

    def attempt(self, what: str, statement: str, params: tuple[Any, ...]) -> dict[str, int]:
        self.conn.execute("SAVEPOINT attack")
        try:
            result = self.conn.execute(statement, params).fetchall() if params else None
            if not params:
                self.conn.execute(statement)
            reached = _reached(self.conn, self.query, self.world)
            if statement == ENTER and _entered_rows(result or [], self.world):
                reached["persistence_enter"] = 1
            self.conn.execute("ROLLBACK TO SAVEPOINT attack")
            return reached
        except psycopg.Error:
            self.conn.execute("ROLLBACK TO SAVEPOINT attack")
            return {}  # refused: nothing reached


@pytest.fixture
def runtime(postgres: PostgresTarget) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        yield conn


def _installed_functions(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = current_schema() ORDER BY 1"
        )
    ]


def test_the_counting_query_finds_other_scopes_rows(world: World, postgres: PostgresTarget) -> None:
    """The count the attacks are judged by finds rows of other scopes when it may see
    them (as the owner): it can fail."""
    with psycopg.connect(postgres.psycopg_url("owner")) as owner:
        tables, workspaced = _tables(owner)
        reached = _reached(owner, _others(world, tables, workspaced).as_string(owner), world)
    for table in ("tenants", "workspaces", "state_versions", "artifacts", "runs", "store_items"):
        assert reached.get(table, 0) > 0, table


def test_attacks_inside_a_unit_of_work_reach_no_other_scope(
    world: World, pg_db: Database, runtime: psycopg.Connection[Any], postgres: PostgresTarget
) -> None:
    tables, workspaced = _tables(runtime)
    query = _others(world, tables, workspaced).as_string(runtime)
    # every function we install is among the attacks (a new one fails this first)
    assert _installed_functions(runtime) == ["persistence_enter", "persistence_scope"]
    reached: dict[str, dict[str, int]] = {}
    with pg_db.unit_of_work(world.slugs["a"]) as uow:
        conn = uow.session.connection().connection.driver_connection
        mine = conn.execute("SELECT count(*) FROM state_versions").fetchone()
        assert mine is not None and mine[0] > 0  # the scope's own rows are there
        attacker = _Attacker(conn, world, query)
        for what, statement, params in attacks(world, SCOPE_KEY, postgres.owner_role):
            if got := attacker.attempt(what, statement, params):
                reached[what] = got
        uow.session.execute(text("SELECT 1"))  # the unit of work goes on
    assert reached == {}


def test_attacks_on_a_plain_runtime_connection_reach_nothing(
    world: World, runtime: psycopg.Connection[Any], postgres: PostgresTarget
) -> None:
    tables, workspaced = _tables(runtime)
    # no scope at all: A's rows count too
    query = _others(world, tables, workspaced, every_row=True).as_string(runtime)
    attacker = _Attacker(runtime, world, query)
    reached = {}
    for what, statement, params in attacks(world, SCOPE_KEY, postgres.owner_role):
        if got := attacker.attempt(what, statement, params):
            reached[what] = got
    assert reached == {}
