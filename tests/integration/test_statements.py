"""Each hot path sends the statement compiled from its Core definition, and the plans of
the hot reads hold on a database the planner has no statistics for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from persistence import Database
from persistence._executor import Statement
from persistence.repositories import _artifact_statements as artifacts
from persistence.repositories import _run_statements as runs
from persistence.repositories import _store_statements as stores
from persistence.repositories import _workflow_statements as workflows
from persistence.repositories.states import statements as states
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget, provision
from tests.fixtures.statements import recorded

SOURCE = "def run(x):\n    return x\n"
RESULT = frozenset({"result", "result_codec", "result_checksum"})


def _sent(db: Database, tenant: str, operation: Any) -> list[str]:
    with db.unit_of_work(tenant) as uow, recorded(db) as statements:
        operation(uow)
    return [sql for sql, _params in statements]


def _compiled(db: Database, statement: Statement) -> str:
    return statement.sql(db.engine.dialect)


def test_hot_paths_send_the_statement_compiled_from_core(db_pg: Database) -> None:
    tenant = new_tenant(db_pg)
    with db_pg.unit_of_work(tenant) as uow:
        uow.workflows.create("flow", SOURCE)
        uow.states.save("s", {"v": 0})
    cases: list[tuple[Any, list[Statement]]] = [
        (lambda uow: uow.states.save("s", {"v": 1}), [states.SAVE_UNTAGGED["any"]]),
        (
            lambda uow: uow.states.save("s", 2, expected_version=2),
            [states.SAVE_UNTAGGED["expected"]],
        ),
        (lambda uow: uow.states.save("s", 3, tags=["t"]), [states.SAVE["any"]]),
        (lambda uow: uow.states.load("s"), [states.LOAD_LATEST]),
        (lambda uow: uow.states.load("s", version=1), [states.LOAD_VERSION]),
        (lambda uow: uow.store("kv").__setitem__("k", 1), [stores.PUT_ENSURING]),
        (lambda uow: uow.store("kv")["k"], [stores.GET]),
        (lambda uow: "k" in uow.store("kv"), [stores.CONTAINS]),
        (lambda uow: uow.workflows.get("flow"), [workflows.LATEST]),
        (lambda uow: uow.workflows.get("flow", revision=1), [workflows.BY_REVISION]),
        (lambda uow: uow.artifacts.save("a.bin", b"x" * 1024), [artifacts.SAVE]),
        (lambda uow: uow.artifacts.load("a.bin"), [artifacts.LOAD]),
        (lambda uow: uow.runs.start("flow", run_id="r1"), [runs.START]),
        (lambda uow: uow.runs.claim(worker="w"), [runs.claim(False, True)]),
        (
            lambda uow: uow.runs.set_result("r1", 3),
            [runs.move("succeeded", RESULT, True)],
        ),
    ]
    for operation, expected in cases:
        sent = _sent(db_pg, tenant, operation)
        assert sent == [_compiled(db_pg, statement) for statement in expected]


def test_sqlite_runs_the_same_definitions(db_sqlite: Database) -> None:
    tenant = new_tenant(db_sqlite)
    with db_sqlite.unit_of_work(tenant) as uow:
        uow.states.save("s", {"v": 0}, tags=["a"])
    sent = _sent(db_sqlite, tenant, lambda uow: uow.states.save("s", {"v": 1}, tags=["a"]))
    pieces = [states.ADVANCE["any"], states.INSERT_VERSION, states.INSERT_TAGS]
    assert [sql for sql in sent if not sql.startswith("BEGIN")][:3] == [
        _compiled(db_sqlite, statement) for statement in pieces
    ]
    sent = _sent(db_sqlite, tenant, lambda uow: uow.states.load("s"))
    assert _compiled(db_sqlite, states.LOAD_LATEST) in sent


# -- plans on a database without statistics -------------------------------------------------


@pytest.fixture(scope="module")
def fresh_target(postgres_server: str) -> Iterator[PostgresTarget]:
    """A newly migrated database (no ANALYZE ever ran, autovacuum off for its tables)."""
    with provision(postgres_server) as target:
        with Database.from_url(target.owner_url) as owner_db, owner_db.owner_engine.begin() as conn:
            tables = ("state_heads", "state_versions", "workflows", "workflow_revisions")
            for table in (*tables, "store_items", "artifacts"):
                conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        yield target


@pytest.fixture
def fresh_db(
    fresh_target: PostgresTarget, open_database: Callable[..., Database]
) -> Iterator[Database]:
    """The fresh database as the runtime role, on either API."""
    with open_database(fresh_target.runtime_url, owner_url=fresh_target.owner_url) as db:
        yield db


def _plan(db: Database, tenant: str, operation: Any) -> str:
    """EXPLAIN (ANALYZE) of the one statement ``operation`` sends, as the runtime role."""
    with db.unit_of_work(tenant) as uow:
        with recorded(db) as statements:
            operation(uow)
        assert len(statements) == 1, statements
        sql, params = statements[0]
        explain = "EXPLAIN (ANALYZE, COSTS OFF) " + sql
        rows = uow.session.connection().exec_driver_sql(explain, params).all()
    return "\n".join(row[0] for row in rows)


def test_hot_reads_read_one_row_whatever_the_statistics(fresh_db: Database) -> None:
    tenant = new_tenant(fresh_db)
    with fresh_db.unit_of_work(tenant) as uow:
        for step in range(2000):
            uow.states.save("busy", {"step": step})
        uow.workflows.create("flow", SOURCE)
        for revision in range(2, 200):
            uow.workflows.save("flow", SOURCE + f"# {revision}\n")
        store = uow.store("kv")
        for key in range(500):
            store[f"k{key}"] = key
            uow.artifacts.save(f"a/{key}.bin", b"x" * 100)
    reads = {
        "state latest": lambda uow: uow.states.load("busy"),
        "state by version": lambda uow: uow.states.load("busy", version=1000),
        "workflow latest": lambda uow: uow.workflows.get("flow"),
        "workflow by revision": lambda uow: uow.workflows.get("flow", revision=100),
        "store get": lambda uow: uow.store("kv")["k250"],
        "artifact load": lambda uow: uow.artifacts.load("a/250.bin"),
    }
    for what, read in reads.items():
        plan = _plan(fresh_db, tenant, read)
        assert "Rows Removed by Join Filter" not in plan, (what, plan)
        assert "Rows Removed by Filter" not in plan, (what, plan)
        assert "Seq Scan" not in plan, (what, plan)
        index_lines = [line for line in plan.splitlines() if "Index Cond" in line]
        keys = ("version = ", "revision = ", "key_hash = ", "(name)::text = ")
        assert any(key in line for line in index_lines for key in keys), (what, plan)
        scans = [line for line in plan.splitlines() if "Index Scan using pk_" in line]
        assert scans and all("rows=1 " in line for line in scans), (what, plan)
