"""The run hot path (start, claim, status changes with results and exceptions): what it
writes reads back identically through get, list, history and the result getters, on
both backends; on PostgreSQL it runs prepared on the driver, without an ORM session."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta

import pytest

from persistence import Database
from persistence.errors import AlreadyExistsError, ConflictError, NotFoundError
from tests.conftest import unique_slug
from tests.fixtures.bridge import open_like
from tests.fixtures.statements import recorded

SOURCE = "def run(x=None):\n    return x\n"


@pytest.fixture
def ws(db: Database, make_tenant: Callable[..., str]) -> str:
    slug = make_tenant("research")
    for workspace in ("default", "research"):
        with db.unit_of_work(slug, workspace) as uow:
            uow.workflows.create("wf", SOURCE)
    return slug


def test_what_the_hot_path_returns_reads_back_identically(db: Database, ws: str) -> None:
    args = {"b": [1, 2.5, None], "a": {"nested": "é"}}
    with db.unit_of_work(ws) as uow:
        parent = uow.runs.start("wf", run_id="parent-1")
        started = uow.runs.start("wf", args=args, tags=["x", "y"], parent_run_id="parent-1")
    with db.unit_of_work(ws) as uow:
        claimed = uow.runs.claim(worker="w1")
        assert claimed is not None and claimed.id == parent.id  # oldest first
        again = uow.runs.claim(worker="w2")
        assert again is not None and again.id == started.id
    with db.unit_of_work(ws) as uow:
        done = uow.runs.set_result(again.id, {"out": [1, 2]}, note="ok")
        failed = uow.runs.set_exception(claimed.id, ValueError("boom"), worker="w9")
    with db.unit_of_work(ws) as uow:
        for record in (done, failed):
            assert uow.runs.get(record.id) == record
            for stamp in (record.created_at, record.updated_at, record.not_before):
                assert stamp.tzinfo is UTC
        assert uow.runs.list().items == [done, failed]
        assert uow.runs.children(parent.id) == [done]
        assert uow.runs.get_result(done.id) == {"out": [1, 2]}
        exception = uow.runs.get_exception(failed.id)
        assert exception is not None and exception.type_name == "ValueError"
        history = uow.runs.history(done.id)
    assert (started.status, again.status, done.status, failed.status) == (
        "pending",
        "running",
        "succeeded",
        "failed",
    )
    assert (done.args, done.tags, done.parent_run_id) == (args, ("x", "y"), "parent-1")
    assert (done.worker, done.attempts, failed.worker) == ("w2", 1, "w9")
    assert [(h.seq, h.status, h.worker, h.note) for h in history] == [
        (1, "pending", None, None),
        (2, "running", "w2", "claimed"),
        (3, "succeeded", None, "ok"),
    ]
    assert [h.at for h in history] == [started.created_at, again.updated_at, done.updated_at]


def test_idempotent_start_and_references(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        first = uow.runs.start("wf", args=[1], run_id="job-1", tags=["t"])
        assert uow.runs.start("wf", args=[1], run_id="job-1") == first
        with pytest.raises(AlreadyExistsError):
            uow.runs.start("wf", args=[2], run_id="job-1")
        with pytest.raises(AlreadyExistsError):
            uow.runs.start("wf", args=[1], run_id="job-1", parent_run_id="job-1")
        with pytest.raises(NotFoundError, match="workflow 'nope'"):
            uow.runs.start("nope", run_id="job-1")  # references are checked first
        with pytest.raises(NotFoundError, match="parent run 'gone'"):
            uow.runs.start("wf", run_id="job-2", parent_run_id="gone")
        assert [r.id for r in uow.runs.list().items] == ["job-1"]
        assert len(uow.runs.history("job-1")) == 1


def test_moves_keep_the_worker_and_refuse_illegal_ones(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        run = uow.runs.start("wf")
        running = uow.runs.transition(run.id, "running", worker="w1")
        retrying = uow.runs.transition(run.id, "retrying", retry_at=timedelta(hours=1))
        assert (running.worker, retrying.worker) == ("w1", "w1")  # kept without a worker
        assert retrying.not_before > retrying.updated_at
        assert uow.runs.claim(worker="w2") is None  # not due yet
        with pytest.raises(ConflictError, match="retrying -> succeeded"):
            uow.runs.set_result(run.id, 1)
        with pytest.raises(ConflictError, match="retrying -> pending"):
            uow.runs.transition(run.id, "pending")
        cancelled_run = uow.runs.start("wf")
        cancelled = uow.runs.transition(cancelled_run.id, "cancelled", note="stop")
        assert (cancelled.status, cancelled.worker, cancelled.attempts) == ("cancelled", None, 0)
        assert [h.status for h in uow.runs.history(run.id)] == ["pending", "running", "retrying"]


def test_claim_stays_in_its_scope(db: Database, ws: str) -> None:
    with db.unit_of_work(ws, "research") as uow:
        uow.runs.start("wf")
    with db.unit_of_work(ws) as uow:
        assert uow.runs.claim(worker="w") is None
    with db.unit_of_work(ws, "research") as uow:
        assert uow.runs.claim(worker="w", workflow="other") is None
        assert uow.runs.claim(worker="w", workflow="wf") is not None


def test_a_rolled_back_savepoint_drops_what_the_hot_path_wrote(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        kept = uow.runs.start("wf")
        with pytest.raises(RuntimeError), uow.savepoint():
            uow.runs.start("wf", run_id="dropped")
            uow.runs.claim(worker="w")
            raise RuntimeError
        assert [r.id for r in uow.runs.list().items] == [kept.id]
        assert uow.runs.get(kept.id).status == "pending"
        assert [h.status for h in uow.runs.history(kept.id)] == ["pending"]


def test_compressed_args_and_results(db: Database, ws: str) -> None:
    zstd = open_like(db, compression="zstd")
    try:
        big = {"text": "x" * 5000, "n": list(range(100))}
        with zstd.unit_of_work(ws) as uow:
            run = uow.runs.start("wf", args=big)
            claimed = uow.runs.claim(worker="w")
            done = uow.runs.set_result(run.id, big)
        with db.unit_of_work(ws) as uow:  # read without the compression setting
            assert uow.runs.get(run.id) == done
            assert uow.runs.get_result(run.id) == big
        assert run.args == big and claimed is not None and claimed.args == big
    finally:
        zstd.close()


def test_postgres_hot_path_is_one_statement_each_without_a_session(db_pg: Database) -> None:
    slug = unique_slug()
    with db_pg.admin() as admin:
        admin.tenants.create(slug)
    with db_pg.unit_of_work(slug) as uow:
        uow.workflows.create("wf", SOURCE)
    with db_pg.unit_of_work(slug) as uow, recorded(db_pg) as sent:
        run = uow.runs.start("wf", args={"a": 1})
        claimed = uow.runs.claim(worker="w")
        assert claimed is not None and claimed.id == run.id
        uow.runs.set_result(run.id, 2)
        assert uow._require()._session is None  # the session was never built
    statements = [statement for statement, _ in sent]
    assert len(statements) == 3 and all("run_history" in s for s in statements)
