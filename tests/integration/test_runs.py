"""Workflow runs on both backends: start, status machine, results, exceptions, data,
deterministic values, claiming order, listing, workers, refusals and isolation."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from persistence import Database
from persistence.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
)
from persistence.models.runs import Run, RunHistory, RunValue
from persistence.repositories.runs import ALLOWED_FROM

SOURCE = "def run(x=None):\n    return x\n"
STATUSES = tuple(ALLOWED_FROM)


@pytest.fixture
def ws(db: Database, make_tenant: Callable[..., str]) -> str:
    """A fresh tenant with a workflow ``wf`` (and ``other``) in its default workspace."""
    slug = make_tenant()
    with db.unit_of_work(slug) as uow:
        uow.workflows.create("wf", SOURCE)
        uow.workflows.create("other", SOURCE)
    return slug


def counts(db: Database, tenant: str) -> tuple[int, int, int]:
    """Rows of runs, run_history and run_values of the tenant."""
    with db.unit_of_work(tenant) as uow:
        return tuple(  # type: ignore[return-value]
            uow.session.scalar(
                select(func.count()).select_from(m).where(m.tenant_id == uow.scope.tenant_id)
            )
            for m in (Run, RunHistory, RunValue)
        )


def to_status(db: Database, tenant: str, target: str) -> str:
    """A new run brought to ``target`` by a legal path; returns its id."""
    paths = {
        "pending": [],
        "running": ["running"],
        "retrying": ["running", "retrying"],
        "succeeded": ["running", "succeeded"],
        "failed": ["running", "failed"],
        "cancelled": ["cancelled"],
    }
    with db.unit_of_work(tenant) as uow:
        run = uow.runs.start("wf")
        for step in paths[target]:
            uow.runs.transition(run.id, step)
        return run.id


def test_start_is_pending_with_history_and_idempotent(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        run = uow.runs.start("wf", args={"b": [1, 2.5], "a": None}, tags=["x", "y", "x"])
        assert (run.status, run.workflow, run.args, run.tags) == (
            "pending",
            "wf",
            {"b": [1, 2.5], "a": None},
            ("x", "y"),
        )
        first = uow.runs.start("wf", args={"a": 1, "b": 2}, run_id="job-1")
        again = uow.runs.start("wf", args={"b": 2, "a": 1}, run_id="job-1")
        assert again == first
        with pytest.raises(AlreadyExistsError):
            uow.runs.start("wf", args={"a": 2, "b": 2}, run_id="job-1")
        with pytest.raises(AlreadyExistsError):
            uow.runs.start("other", args={"a": 1, "b": 2}, run_id="job-1")
        assert [h.status for h in uow.runs.history("job-1")] == ["pending"]
        assert uow.runs.get(run.id) == run


def test_unknown_workflow_parent_and_run(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        with pytest.raises(NotFoundError, match="workflow"):
            uow.runs.start("missing")
        with pytest.raises(NotFoundError, match="parent"):
            uow.runs.start("wf", parent_run_id="nope")
        for call in (
            lambda: uow.runs.get("nope"),
            lambda: uow.runs.history("nope"),
            lambda: uow.runs.transition("nope", "running"),
            lambda: uow.runs.set_result("nope", 1),
            lambda: uow.runs.get_result("nope"),
            lambda: uow.runs.set_exception("nope", ValueError()),
            lambda: uow.runs.get_exception("nope"),
            lambda: uow.runs.get_data("nope", "k"),
            lambda: uow.runs.set_data("nope", "k", 1),
            lambda: uow.runs.deterministic("nope", "k", lambda: 1),
            lambda: uow.runs.children("nope"),
        ):
            with pytest.raises(NotFoundError):
                call()
    assert counts(db, ws) == (0, 0, 0)


def test_workflow_in_another_workspace_is_unknown(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    slug = make_tenant("research")
    with db.unit_of_work(slug, "research") as uow:
        uow.workflows.create("wf", SOURCE)
    with db.unit_of_work(slug) as uow, pytest.raises(NotFoundError):
        uow.runs.start("wf")


ILLEGAL = [(s, t) for s, t in itertools.product(STATUSES, STATUSES) if s not in ALLOWED_FROM[t]]


def test_every_illegal_transition_conflicts(db: Database, ws: str) -> None:
    assert len(ILLEGAL) == 36 - 7  # 7 legal moves
    runs = {source: to_status(db, ws, source) for source in STATUSES}
    with db.unit_of_work(ws) as uow:
        for source, target in ILLEGAL:
            rid = runs[source]
            before = uow.runs.history(rid)
            with pytest.raises(ConflictError, match=f"{source} -> {target}"), uow.savepoint():
                uow.runs.transition(rid, target)
            assert uow.runs.get(rid).status == source
            assert uow.runs.history(rid) == before


def test_history_of_a_retried_failure(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        uow.runs.transition(rid, "running", worker="w1")
        uow.runs.transition(rid, "retrying", worker="w1", note="timeout")
        uow.runs.transition(rid, "running", worker="w2")
        run = uow.runs.transition(rid, "failed", worker="w2", note="gave up")
        history = uow.runs.history(rid)
    assert run.attempts == 2 and run.worker == "w2"
    assert [(h.seq, h.status, h.worker, h.note) for h in history] == [
        (1, "pending", None, None),
        (2, "running", "w1", None),
        (3, "retrying", "w1", "timeout"),
        (4, "running", "w2", None),
        (5, "failed", "w2", "gave up"),
    ]
    assert [h.at for h in history] == sorted(h.at for h in history)


def test_result_round_trip(db: Database, ws: str) -> None:
    value = {"text": "héllo", "n": [1, -(2**63), 2.5, True, None], "nested": {"k": {}}}
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        with pytest.raises(NotFoundError, match="no result"):
            uow.runs.get_result(rid)
        with pytest.raises(ConflictError, match="pending -> succeeded"):
            uow.runs.set_result(rid, 1)
        uow.runs.claim(worker="w")
        assert uow.runs.set_result(rid, value, worker="w").status == "succeeded"
    with db.unit_of_work(ws) as uow:
        assert uow.runs.get_result(rid) == value
        assert uow.runs.get_exception(rid) is None


class ToolError(RuntimeError):
    pass


def _fail_with_cause() -> None:
    try:
        {}["missing-key"]
    except KeyError as exc:
        raise ToolError("the tool gave up") from exc


def test_chained_exception_round_trip(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        uow.runs.transition(rid, "running")
        try:
            _fail_with_cause()
        except ToolError as exc:
            assert uow.runs.set_exception(rid, exc).status == "failed"
    with db.unit_of_work(ws) as uow:
        stored = uow.runs.get_exception(rid)
        assert stored is not None
        assert stored.type_name == f"{__name__}.ToolError"
        assert stored.message == "the tool gave up"
        tb = stored.traceback
        assert "KeyError: 'missing-key'" in tb and "ToolError: the tool gave up" in tb
        assert "direct cause" in tb and "_fail_with_cause" in tb
        assert tb.index("KeyError") < tb.index("ToolError: the tool gave up")
        with pytest.raises(InvalidTypeError):
            uow.runs.set_exception(rid, "not an exception")  # type: ignore[arg-type]


def test_run_data_and_deterministic_values(db: Database, ws: str) -> None:
    calls: list[int] = []

    def factory() -> dict[str, Any]:
        calls.append(1)
        return {"seed": 0.25}

    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        assert uow.runs.get_data(rid, "k") is None
        assert uow.runs.get_data(rid, "k", default=7) == 7
        uow.runs.set_data(rid, "k", [1])
        uow.runs.set_data(rid, "k", {"replaced": True})
        assert uow.runs.deterministic(rid, "seed", factory) == {"seed": 0.25}
    with db.unit_of_work(ws) as uow:
        assert uow.runs.get_data(rid, "k") == {"replaced": True}
        assert uow.runs.deterministic(rid, "seed", lambda: 99) == {"seed": 0.25}
        # data and deterministic values are separate namespaces
        assert uow.runs.get_data(rid, "seed") is None
    assert len(calls) == 1


BAD_VALUES = [float("nan"), {1: "int key"}, (1, 2), {1, 2}, b"bytes", object(), 2**64]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda v: type(v).__name__)
def test_non_json_is_refused_and_nothing_written(db: Database, ws: str, bad: object) -> None:
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        uow.runs.transition(rid, "running")
    before = counts(db, ws)
    with db.unit_of_work(ws) as uow:
        with pytest.raises(InvalidInputError):
            uow.runs.start("wf", args={"x": bad})
        with pytest.raises(InvalidInputError):
            uow.runs.set_result(rid, [bad])
        with pytest.raises(InvalidInputError):
            uow.runs.set_data(rid, "k", bad)
        with pytest.raises(InvalidInputError):
            uow.runs.deterministic(rid, "k", lambda: bad)
        with pytest.raises(InvalidInputError):
            uow.runs.register_worker("w", {"x": bad})
        assert uow.runs.get(rid).status == "running"
        assert len(uow.runs.history(rid)) == 2
    assert counts(db, ws) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.start("wf", run_id=""),
        lambda r: r.start("wf", run_id="has space"),
        lambda r: r.start("wf", run_id=5),
        lambda r: r.start("wf", tags="single"),
        lambda r: r.start("wf", tags=[""]),
        lambda r: r.start(None),
        lambda r: r.transition("x", "done"),
        lambda r: r.transition("x", "succeeded", retry_at=timedelta(seconds=1)),
        lambda r: r.list(limit=0),
        lambda r: r.list(cursor="garbage"),
        lambda r: r.list(status="bogus"),
        lambda r: r.purge(timedelta(0), statuses=("pending",)),
        lambda r: r.claim(worker=""),
    ],
)
def test_bad_arguments_are_refused(db: Database, ws: str, call: Callable[[Any], Any]) -> None:
    with db.unit_of_work(ws) as uow, pytest.raises(InvalidInputError):
        call(uow.runs)
    assert counts(db, ws) == (0, 0, 0)


def test_claim_order_retry_time_and_workflow_filter(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        first, second = uow.runs.start("wf").id, uow.runs.start("other").id
        assert uow.runs.claim(worker="w", workflow="other").id == second  # type: ignore[union-attr]
        claimed = uow.runs.claim(worker="w")
        assert claimed is not None and claimed.id == first and claimed.attempts == 1
        assert uow.runs.claim(worker="w") is None
        later = uow.runs.transition(first, "retrying", retry_at=timedelta(hours=1))
        assert later.not_before > later.updated_at
        assert uow.runs.claim(worker="w") is None  # not due yet
        uow.runs.transition(second, "retrying")  # due now
        again = uow.runs.claim(worker="w2")
        assert again is not None and again.id == second and again.attempts == 2
        assert uow.runs.history(second)[-1].note == "claimed"


def test_list_pagination_filters_and_children(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        parent = uow.runs.start("wf").id
        kids = [uow.runs.start("other", parent_run_id=parent).id for _ in range(4)]
        uow.runs.transition(kids[0], "cancelled")
        seen, cursor = [], None
        while True:
            page = uow.runs.list(limit=2, cursor=cursor)
            seen += [r.id for r in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [*reversed(kids), parent]  # newest first
        assert [r.id for r in uow.runs.list(workflow="wf").items] == [parent]
        assert [r.id for r in uow.runs.list(status="cancelled").items] == [kids[0]]
        assert [r.id for r in uow.runs.list("pending", "other").items] == kids[:0:-1]
        assert [r.id for r in uow.runs.children(parent)] == kids
        assert uow.runs.children(kids[1]) == []


def test_purge_keeps_unfinished_and_recent(db: Database, ws: str) -> None:
    pending = to_status(db, ws, "pending")
    finished = [to_status(db, ws, s) for s in ("succeeded", "failed", "cancelled")]
    running = to_status(db, ws, "running")
    with db.unit_of_work(ws) as uow:
        uow.runs.set_data(pending, "k", 1)
    with db.unit_of_work(ws) as uow:
        assert uow.runs.purge(timedelta(hours=1)) == 0  # none older than an hour
        assert uow.runs.purge(timedelta(0), statuses=["failed"]) == 1
        assert uow.runs.purge(timedelta(0), batch_size=1) == 2
        assert {r.id for r in uow.runs.list().items} == {pending, running}
        with pytest.raises(NotFoundError):
            uow.runs.history(finished[0])
    assert counts(db, ws) == (2, 3, 1)


def test_workers_registry(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        first = uow.runs.register_worker("w-b", {"host": "h1", "pid": 1})
        uow.runs.register_worker("w-a")
        again = uow.runs.register_worker("w-b", {"host": "h1", "pid": 2})
        workers = uow.runs.workers()
    assert [w.name for w in workers] == ["w-a", "w-b"]
    assert workers[1].info == {"host": "h1", "pid": 2}
    assert again.registered_at == first.registered_at
    assert again.heartbeat_at >= first.heartbeat_at


def test_runs_of_another_tenant_or_workspace_are_invisible(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    a, b = make_tenant("research"), make_tenant()
    for slug in (a, b):
        with db.unit_of_work(slug) as uow:
            uow.workflows.create("wf", SOURCE)
    with db.unit_of_work(a) as uow:
        rid = uow.runs.start("wf", run_id="shared-id", args=1).id
        uow.runs.set_data(rid, "k", "secret")
        uow.runs.register_worker("wa")
    with db.unit_of_work(b) as uow:
        assert uow.runs.list().items == [] and uow.runs.workers() == []
        assert uow.runs.claim(worker="wb") is None
        for call in (
            lambda: uow.runs.get(rid),
            lambda: uow.runs.get_data(rid, "k"),
            lambda: uow.runs.transition(rid, "cancelled"),
        ):
            with pytest.raises(NotFoundError):
                call()
        assert uow.runs.purge(timedelta(0), statuses=["cancelled"]) == 0
        # the same caller-chosen id is free in another tenant
        assert uow.runs.start("wf", run_id="shared-id", args=2).args == 2
    with db.unit_of_work(a, "research") as uow, pytest.raises(NotFoundError):
        uow.runs.get(rid)
    with db.unit_of_work(a) as uow:
        assert uow.runs.get(rid).args == 1 and uow.runs.get_data(rid, "k") == "secret"


def test_workspace_and_tenant_delete_cascade(db: Database, ws: str) -> None:
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        uow.runs.set_data(rid, "k", 1)
        uow.runs.deterministic(rid, "d", lambda: 2)
        uow.runs.register_worker("w")
        uow.workflows.delete("wf")  # runs outlive their workflow
    with db.unit_of_work(ws) as uow:
        assert uow.runs.get(rid).workflow == "wf"
        tenant_id = uow.scope.tenant_id
    with db.admin() as admin:
        admin.tenants.delete(ws)
    from persistence.models.runs import Worker

    with db.admin() as admin:
        session = admin.tenants._session
        for model in (Run, RunHistory, RunValue, Worker):
            rows = session.scalar(
                select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
            )
            assert rows == 0, model.__tablename__


def test_models_match_migration(sync_db: Database) -> None:
    from persistence.migrations import diff

    run_tables = {"runs", "run_history", "run_values", "run_workers"}
    assert [d for d in diff(sync_db.owner_engine) if any(t in repr(d) for t in run_tables)] == []


def test_unstorable_text_is_escaped_in_exceptions_and_refused_elsewhere(
    db: Database, ws: str
) -> None:
    with db.unit_of_work(ws) as uow:
        rid = uow.runs.start("wf").id
        uow.runs.transition(rid, "running")
        with pytest.raises(InvalidInputError):
            uow.runs.transition(rid, "failed", note="nul\x00byte")
        with pytest.raises(InvalidInputError):
            uow.runs.set_data(rid, "bad\ud800key", 1)
        uow.runs.set_exception(rid, ValueError("nul\x00 and \ud800 surrogate"))
    with db.unit_of_work(ws) as uow:
        stored = uow.runs.get_exception(rid)
        assert stored is not None
        assert stored.message == "nul\\x00 and \\ud800 surrogate"
