"""Runs at volume and behind row-level security: batched purge of 50,000 runs, and
tenant isolation checked with raw SQL as the runtime role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, insert

from persistence import Database
from persistence.codecs import checksum
from persistence.models.base import utcnow
from persistence.models.runs import Run
from tests.conftest import unique_slug
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import events_of

SOURCE = "def run():\n    return None\n"
FINISHED_RUNS = 50_000
BATCH = 5_000
RUN_TABLES = ("runs", "run_history", "run_values", "run_workers")


def _bulk_rows(uow: Any, n: int, statuses: tuple[str, ...], prefix: str) -> list[dict[str, Any]]:
    old = utcnow() - timedelta(days=2)
    scope = uow.scope
    return [
        {
            "tenant_id": scope.tenant_id,
            "workspace_id": scope.workspace_id,
            "id": f"{prefix}-{i}",
            "workflow": "wf",
            "status": statuses[i % len(statuses)],
            "args": b"null",
            "args_codec": "none",
            "args_checksum": checksum(b"null"),
            "tags": "[]",
            "parent_run_id": None,
            "worker": None,
            "attempts": 1,
            "history_seq": 1,
            "not_before": old,
            "created_at": old,
            "updated_at": old,
        }
        for i in range(n)
    ]


@pytest.fixture
def deletes(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of every DELETE on ``runs`` while the test runs."""
    seen: list[tuple[str, Any]] = []

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM RUNS"):
            seen.append((statement, parameters))

    engine = events_of(db)
    event.listen(engine, "after_cursor_execute", after)
    yield seen
    event.remove(engine, "after_cursor_execute", after)


def test_purge_of_50000_runs_goes_in_bounded_batches(
    db: Database, make_tenant: Callable[..., str], deletes: list[tuple[str, Any]]
) -> None:
    slug = make_tenant()
    with db.unit_of_work(slug) as uow:
        uow.workflows.create("wf", SOURCE)
        finished = _bulk_rows(uow, FINISHED_RUNS, ("succeeded", "failed", "cancelled"), "done")
        unfinished = _bulk_rows(uow, 30, ("pending", "running", "retrying"), "open")
        uow.session.execute(insert(Run), finished + unfinished)
    with db.unit_of_work(slug) as uow:
        assert uow.runs.purge(timedelta(days=1), batch_size=BATCH) == FINISHED_RUNS
    # No statement deletes them all: one bounded DELETE per batch (the last finds none).
    assert len(deletes) == FINISHED_RUNS // BATCH + 1
    for statement, parameters in deletes:
        assert "LIMIT" in statement.upper()
        values = parameters.values() if isinstance(parameters, dict) else parameters
        assert BATCH in list(values)
    with db.unit_of_work(slug) as uow:
        left = uow.runs.list(limit=100).items
        assert len(left) == 30 and {r.status for r in left} == {"pending", "running", "retrying"}


@pytest.fixture
def runtime(postgres: PostgresTarget) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        yield conn


def test_raw_sql_as_runtime_role_sees_only_its_tenants_runs(
    db_pg: Database, runtime: psycopg.Connection[Any]
) -> None:
    with db_pg.admin() as admin:
        a, b = (admin.tenants.create(unique_slug(f"runs-rls-{n}")) for n in "ab")
    with db_pg.unit_of_work(a.slug) as uow:
        uow.workflows.create("wf", SOURCE)
        rid = uow.runs.start("wf", args={"secret": 1}).id
        uow.runs.set_data(rid, "k", 1)
        uow.runs.register_worker("w")
    with db_pg.unit_of_work(b.slug) as uow:
        assert uow.runs.list().items == []

    def visible(tenant: Any) -> list[int]:
        runtime.rollback()
        if tenant is not None:
            scope = token(db_pg, tenant)
            runtime.execute("SELECT set_config('persistence.scope', %s, true)", (scope,))
        return [
            runtime.execute(f"SELECT count(*) FROM {t} WHERE tenant_id = %s", (a.id,)).fetchone()[0]  # type: ignore[index]
            for t in RUN_TABLES
        ]

    assert visible(None) == [0, 0, 0, 0]
    assert visible(b.slug) == [0, 0, 0, 0]
    assert visible(a.slug) == [1, 1, 1, 1]
    # Entered as B: A's runs cannot be changed, nor rows written in A's name.
    visible(b.slug)
    updated = runtime.execute("UPDATE runs SET status = 'cancelled' WHERE tenant_id = %s", (a.id,))
    assert updated.rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        runtime.execute(
            "INSERT INTO run_workers (tenant_id, workspace_id, name, info, registered_at, "
            "heartbeat_at) VALUES (%s, gen_random_uuid(), 'x', '{}', now(), now())",
            (a.id,),
        )
    runtime.rollback()
    with db_pg.unit_of_work(a.slug) as uow:
        assert uow.runs.get(rid).status == "pending"
