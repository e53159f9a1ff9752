"""Workflows: revisions, validation, search and scoping on both backends."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from persistence import Database
from persistence.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
)
from persistence.migrations import diff
from persistence.records import WorkflowRecord
from tests.conftest import unique_slug
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import recorded


@pytest.fixture
def pg_tenant(db_pg: Database) -> str:
    slug = unique_slug()
    with db_pg.admin() as admin:
        admin.tenants.create(slug)
    return slug


SRC = "def run(x):\n    return x * 2\n"
ASYNC_SRC = "import asyncio\r\n\r\nasync def run():\r\n    await asyncio.sleep(0)\r\n"


def test_create_get_revisions_and_byte_exact_source(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        first = uow.workflows.create("double", SRC, "Doubles x", tags=("math", "demo"))
        assert (first.revision, first.tags) == (1, ("math", "demo"))
        second = uow.workflows.save("double", ASYNC_SRC)
        assert second.revision == 2
        assert second.description == "Doubles x" and second.tags == ("math", "demo")
        # Saving the same content again writes no new revision.
        assert uow.workflows.save("double", ASYNC_SRC).revision == 2
    with db.unit_of_work(tenant) as uow:
        latest = uow.workflows.get("double")
        assert latest.source == ASYNC_SRC and latest.revision == 2
        assert uow.workflows.get("double", revision=1).source == SRC
        assert [r.revision for r in uow.workflows.revisions("double")] == [1, 2]
        assert latest.created_at.tzinfo is not None
        with pytest.raises(AlreadyExistsError):
            uow.workflows.create("double", SRC)
        with pytest.raises(NotFoundError):
            uow.workflows.get("double", revision=3)
        with pytest.raises(NotFoundError):
            uow.workflows.get("missing")


def test_invalid_input_is_refused_with_line_numbers(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        with pytest.raises(InvalidInputError, match="line 3"):
            uow.workflows.create("bad", "x = 1\n\ndef run(:\n    pass\n")
        with pytest.raises(InvalidInputError, match=r"line 2.*run"):
            uow.workflows.create("norun", "def main():\n    pass\n")
        with pytest.raises(InvalidInputError, match="run"):
            uow.workflows.create("nested", "class A:\n    def run(self):\n        pass\n")
        for name in ("1abc", "a-b", "class", "x" * 101, ""):
            with pytest.raises(InvalidInputError):
                uow.workflows.create(name, SRC)
        with pytest.raises(InvalidTypeError):
            uow.workflows.create("ok", b"def run(): pass")  # type: ignore[arg-type]
        with pytest.raises(InvalidTypeError):
            uow.workflows.create("ok", SRC, tags="single")
        with pytest.raises(InvalidInputError):
            uow.workflows.create("ok", SRC, tags=("a", "a"))
        with pytest.raises(InvalidInputError):
            uow.workflows.create("ok", "def run():\n    return '\x00'\n")
        assert uow.workflows.list().items == []


def test_list_pages_delete_and_workspace_scoping(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        for name in ("c_flow", "a_flow", "b_flow"):
            uow.workflows.create(name, SRC)
    with db.unit_of_work(tenant, "research") as uow:
        uow.workflows.create("a_flow", ASYNC_SRC)  # same name, another object
    with db.unit_of_work(tenant) as uow:
        page = uow.workflows.list(limit=2)
        assert [w.name for w in page.items] == ["a_flow", "b_flow"]
        rest = uow.workflows.list(limit=2, cursor=page.next_cursor)
        assert [w.name for w in rest.items] == ["c_flow"] and rest.next_cursor is None
        uow.workflows.delete("a_flow")
        with pytest.raises(NotFoundError):
            uow.workflows.delete("a_flow")
        with pytest.raises(NotFoundError):
            uow.workflows.revisions("a_flow")
    with db.unit_of_work(tenant, "research") as uow:
        assert uow.workflows.get("a_flow").source == ASYNC_SRC


def test_search_best_first_and_never_crosses_scopes(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    mine, other = make_tenant("research"), make_tenant()
    with db.unit_of_work(mine) as uow:
        uow.workflows.create("analyze_sentiment", SRC, "Classify the mood of a text")
        uow.workflows.create("sentiment_report", SRC, "Weekly report", tags=("reports",))
        uow.workflows.create("fetch_prices", SRC, "Download stock prices", tags=("finance",))
        uow.workflows.create("summarize", SRC, "Summarize a document and its mood")
    for tenant_slug, workspace in ((mine, "research"), (other, "default")):
        with db.unit_of_work(tenant_slug, workspace) as uow:
            uow.workflows.create("analyze_sentiment", SRC, "mood mood mood")
            uow.workflows.create("mood", SRC, "elsewhere")
    with db.unit_of_work(mine) as uow:
        by_name = uow.workflows.search("analyze_sentiment")
        assert by_name[0].name == "analyze_sentiment"
        assert [w.name for w in by_name] == ["analyze_sentiment", "sentiment_report"]
        by_word = uow.workflows.search("mood")
        assert [w.name for w in by_word] == ["analyze_sentiment", "summarize"]
        assert uow.workflows.search("FINANCE")[0].name == "fetch_prices"
        assert uow.workflows.search("prices stock", limit=1)[0].name == "fetch_prices"
        assert uow.workflows.search("nothing-like-this") == []
        assert all(w.description != "mood mood mood" for w in by_word)


def test_concurrent_saves_make_distinct_revisions(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.workflows.create("shared", SRC)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with db.unit_of_work(tenant) as uow:
                uow.workflows.save("shared", f"def run():\n    return {i}\n")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with db.unit_of_work(tenant) as uow:
        revisions = uow.workflows.revisions("shared")
        assert [r.revision for r in revisions] == [1, 2, 3, 4, 5]
        assert {r.source for r in revisions[1:]} == {
            f"def run():\n    return {i}\n" for i in range(4)
        }


def test_import_revision_is_idempotent_and_detects_conflicts(db: Database, tenant: str) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with db.unit_of_work(tenant) as uow:
        made = uow.workflows.create("imported", SRC)
        rec = made.model_copy(update={"name": "other", "revision": 3, "created_at": when})
        assert uow.workflows.import_revision(rec) is True
        assert uow.workflows.import_revision(rec) is False
        assert uow.workflows.get("other") == rec
        older = rec.model_copy(update={"revision": 1, "created_at": when})
        assert uow.workflows.import_revision(older) is True
        assert uow.workflows.get("other").revision == 3
        changed = WorkflowRecord(**{**rec.model_dump(), "description": "changed"})
        with pytest.raises(ConflictError):
            uow.workflows.import_revision(changed)
        with pytest.raises(InvalidInputError, match="checksum"):
            uow.workflows.import_revision(
                rec.model_copy(update={"revision": 9, "checksum": "0" * 64})
            )


def test_get_reads_what_the_same_transaction_wrote(db: Database, tenant: str) -> None:
    # On PostgreSQL ``get`` runs on the driver connection, the writes on the session:
    # both are the one transaction, savepoints included.
    with db.unit_of_work(tenant) as uow:
        made = uow.workflows.create("in_tx", SRC, "first", tags=("x", "y"))
        assert uow.workflows.get("in_tx") == made
        with uow.savepoint():
            second = uow.workflows.save("in_tx", ASYNC_SRC, tags=())
            assert uow.workflows.get("in_tx") == second and second.tags == ()
        try:
            with uow.savepoint():
                uow.workflows.save("in_tx", "def run():\n    return 3\n")
                assert uow.workflows.get("in_tx").revision == 3
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert uow.workflows.get("in_tx") == second
        assert uow.workflows.get("in_tx", revision=1) == made
    with db.unit_of_work(tenant) as uow:
        latest = uow.workflows.get("in_tx")
        assert latest == uow.workflows.revisions("in_tx")[-1] == second
        assert latest.created_at.utcoffset() is not None and latest.created_at.tzinfo == UTC
        assert isinstance(latest.tags, tuple)
        with pytest.raises(NotFoundError, match="revision 3"):
            uow.workflows.get("in_tx", revision=3)
        for bad in (0, -1, 1.0, True, "1", 2**31, 2**40):  # past the INTEGER column: refused
            with pytest.raises(InvalidInputError):
                uow.workflows.get("in_tx", revision=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            uow.workflows.get("not a name")
    with db.unit_of_work(tenant, "research") as uow, pytest.raises(NotFoundError):
        uow.workflows.get("in_tx")


def test_pg_get_is_one_prepared_statement_without_a_session(
    db_pg: Database, pg_tenant: str
) -> None:
    with db_pg.unit_of_work(pg_tenant) as uow:
        uow.workflows.create("fast", SRC)
    with db_pg.unit_of_work(pg_tenant) as uow, recorded(db_pg) as sent:
        assert uow.workflows.get("fast").revision == 1
        assert uow.workflows.get("fast", revision=1).source == SRC
        assert uow._require()._session is None  # the session was never built
    statements = [statement for statement, _ in sent]
    assert len(statements) == 2 and all("workflow_revisions" in s for s in statements)


def test_tenant_delete_cascades(db_pg: Database, pg_tenant: str) -> None:
    tenant = pg_tenant
    with db_pg.unit_of_work(tenant) as uow:
        uow.workflows.create("doomed", SRC)
    with db_pg.admin() as admin:
        admin.tenants.delete(tenant)
    with db_pg.owner_engine.connect() as conn:
        from sqlalchemy import text

        count = conn.execute(
            text(
                "SELECT count(*) FROM workflow_revisions r JOIN workflows w "
                "USING (tenant_id, workspace_id, name) WHERE w.name='doomed'"
            )
        )
        assert count.scalar_one() == 0


# The schema (Alembic's diff on a sync engine): one for both APIs.
def test_schema_matches_models(sync_db: Database) -> None:
    mine = {"workflows", "workflow_revisions", "artifacts"}
    assert [d for d in diff(sync_db.owner_engine) if any(t in repr(d) for t in mine)] == []


def test_runtime_role_sees_no_rows_without_a_tenant(
    db_pg: Database, postgres: PostgresTarget, pg_tenant: str
) -> None:
    tenant = pg_tenant
    with db_pg.unit_of_work(tenant) as uow:
        uow.workflows.create("secret", SRC)
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        for table in ("workflows", "workflow_revisions", "artifacts"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO workflows VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 1, "
                "'', '[]', now(), now())"
            )


def test_cli_list_show_search(db: Database, tenant: str) -> None:
    from click.testing import CliRunner

    from persistence.cli import cli

    with db.unit_of_work(tenant) as uow:
        uow.workflows.create("report_flow", SRC, "Weekly report", tags=("reports",))
        uow.workflows.save("report_flow", ASYNC_SRC)
    url = db.settings.database_url
    base = ["--database-url", url, "--owner-url", db.settings.owner_database_url or url]
    runner = CliRunner()
    listed = runner.invoke(cli, [*base, "--json", "workflow", "list", "-t", tenant])
    assert listed.exit_code == 0, listed.output
    assert [(w["name"], w["revision"]) for w in json.loads(listed.stdout)] == [("report_flow", 2)]
    shown = runner.invoke(
        cli, [*base, "workflow", "show", "-t", tenant, "report_flow", "-r", "1", "--source"]
    )
    assert shown.exit_code == 0 and shown.stdout == SRC
    found = runner.invoke(cli, [*base, "--json", "workflow", "search", "-t", tenant, "weekly"])
    assert [w["name"] for w in json.loads(found.stdout)] == ["report_flow"]
    missing = runner.invoke(cli, [*base, "workflow", "show", "-t", tenant, "nope"])
    assert missing.exit_code != 0
