"""The run repository's hot statements, defined once in SQLAlchemy Core.

Each status change also appends the run's history entry. On PostgreSQL the change and
the entry are one statement (the change as a data-modifying CTE that the history insert
reads); SQLite has no data-modifying CTE, so it runs the same two pieces one after the
other inside its ``BEGIN IMMEDIATE`` transaction. The start on PostgreSQL also checks
the workflow and parent in the same statement (:data:`START`); SQLite checks first
(:data:`REFERENCES`).

* :data:`START`: insert the ``pending`` run unless its id is taken (one row always: the
  two checks, then the run's columns, NULL when nothing was inserted).
* :func:`claim`: take the oldest due run (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
  which SQLite's compiler leaves out: its writers are serialized) and mark it running.
* :func:`move`: move one run to a status, only from the statuses ``ALLOWED_FROM`` lists.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    Integer,
    String,
    Table,
    bindparam,
    exists,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)

from persistence._executor import Statement
from persistence.models.base import UTCDateTime
from persistence.models.runs import CLAIMABLE_WHERE, Run, RunHistory
from persistence.models.workflows import Workflow
from persistence.repositories._runs import ALLOWED_FROM, RUN_COLUMNS
from persistence.repositories._sql import NOW, TENANT, WORKSPACE, bound_row, scoped, upsert

__all__ = ["LOG_STARTED", "REFERENCES", "START", "START_RUN", "claim", "logger", "move"]

RUNS = cast(Table, Run.__table__)
HISTORY = cast(Table, RunHistory.__table__)
ID = bindparam("id", type_=String())
WORKFLOW = bindparam("workflow", type_=String())
PARENT = bindparam("parent", type_=String())
WORKER = bindparam("worker", type_=String())
NOTE = bindparam("note", type_=String())
_COLUMNS = [RUNS.c[column.key] for column in RUN_COLUMNS]


def _status(name: str) -> Any:
    return literal_column(f"'{name}'")  # a literal: it matches the partial claim index


def _references() -> Any:
    workflow = exists().where(scoped(Workflow.__table__), Workflow.__table__.c.name == WORKFLOW)
    parent = exists().where(scoped(RUNS), RUNS.c.id == PARENT)
    return select(
        workflow.label("workflow_found"), or_(PARENT.is_(None), parent).label("parent_found")
    )


REFERENCES = Statement(_references(), "runs_references")

_NEW_RUN: dict[str, Any] = {
    "tenant_id": TENANT,
    "workspace_id": WORKSPACE,
    "id": ID,
    "workflow": WORKFLOW,
    "status": _status("pending"),
    "args": bindparam("args", type_=RUNS.c.args.type),
    "args_codec": bindparam("codec", type_=String()),
    "args_checksum": bindparam("checksum", type_=String()),
    "tags": bindparam("tags", type_=RUNS.c.tags.type),
    "parent_run_id": PARENT,
    "worker": None,
    "attempts": literal_column("0"),
    "history_seq": literal_column("1"),
    "not_before": NOW,
    "created_at": NOW,
    "updated_at": NOW,
}


def log(moved: Any, status: str, *, worker: Any = WORKER, note: Any = NOTE) -> Any:
    """INSERT the history entry of the run ``moved`` (a selectable of ``id`` and
    ``history_seq``: the change's CTE on PostgreSQL, bound values on SQLite)."""
    columns = ["tenant_id", "workspace_id", "run_id", "seq", "status", "at", "worker", "note"]
    source = select(
        TENANT, WORKSPACE, moved.c.id, moved.c.history_seq, _status(status), NOW, worker, note
    ).select_from(moved)
    return insert(HISTORY).from_select(columns, source)


def bound_run() -> Any:
    """The run's id and history number as parameters (SQLite: known after the change)."""
    return bound_row("moved", id=String(), history_seq=Integer())


def _start() -> Any:
    """PostgreSQL: the checks, the insert and the history entry in one statement."""
    refs = _references().cte("refs")
    wanted = select(*_NEW_RUN.values()).where(refs.c.workflow_found, refs.c.parent_found)
    moved = (
        upsert(RUNS)
        .from_select(list(_NEW_RUN), wanted)
        .on_conflict_do_nothing(index_elements=["tenant_id", "workspace_id", "id"])
        .returning(*_COLUMNS)
        .cte("moved")
    )
    logged = log(moved, "pending", worker=None, note=None).cte("logged")
    joined = refs.outerjoin(moved, true())
    started = select(refs.c.workflow_found, refs.c.parent_found, *moved.c).select_from(joined)
    return started.add_cte(logged)


START = Statement(_start(), "runs_start")
# SQLite: after REFERENCES, the insert (no row when the id is taken), then log().
START_RUN = Statement(
    upsert(RUNS)
    .values(_NEW_RUN)
    .on_conflict_do_nothing(index_elements=["tenant_id", "workspace_id", "id"])
    .returning(*_COLUMNS),
    "runs_start_run",
)
LOG_STARTED = Statement(log(bound_run(), "pending", worker=None, note=None), "runs_log_pending")


def _logged(change: Any, status: str, name: str, postgres: bool) -> Statement:
    """``change`` (an UPDATE of one run) with its history entry: one statement on
    PostgreSQL; on SQLite the change alone (run :func:`logger` after it)."""
    if not postgres:
        return Statement(change.returning(*_COLUMNS), f"{name}_sqlite")
    moved = change.returning(*_COLUMNS).cte("moved")
    logged = log(moved, status).cte("logged")
    return Statement(select(*moved.c).add_cte(logged), name)


@functools.cache
def logger(status: str) -> Statement:
    """SQLite: the history entry of a change to ``status`` (parameters ``id``,
    ``history_seq``, ``worker``, ``note``)."""
    return Statement(log(bound_run(), status), f"runs_log_{status}")


@functools.cache
def claim(of_workflow: bool, postgres: bool) -> Statement:
    """Take the oldest due run (of any workflow or, with ``workflow``, of one)."""
    due = select(RUNS.c.id).where(scoped(RUNS), text(CLAIMABLE_WHERE), RUNS.c.not_before <= NOW)
    if of_workflow:
        due = due.where(RUNS.c.workflow == WORKFLOW)
    due = due.order_by(RUNS.c.not_before, RUNS.c.id).limit(literal_column("1"))
    due = due.with_for_update(skip_locked=True)
    change = (
        update(RUNS)
        .where(scoped(RUNS), text(CLAIMABLE_WHERE), RUNS.c.id == due.scalar_subquery())
        .values(
            status=_status("running"),
            worker=WORKER,
            attempts=RUNS.c.attempts + literal_column("1"),
            history_seq=RUNS.c.history_seq + literal_column("1"),
            updated_at=NOW,
        )
    )
    return _logged(change, "running", f"runs_claim_{'one' if of_workflow else 'any'}", postgres)


#: The columns ``set_result``, ``set_exception`` and ``retrying`` write with their move.
EXTRA_TYPES: dict[str, Any] = {
    "result": RUNS.c.result.type,
    "result_codec": String(),
    "result_checksum": String(),
    "exception_type": String(),
    "exception_message": String(),
    "exception_traceback": String(),
    "not_before": UTCDateTime(),
}


@functools.cache
def move(target: str, extra: frozenset[str], postgres: bool) -> Statement:
    """Move one run (``id``) to ``target``, writing the ``extra`` columns too."""
    values: dict[str, Any] = {
        "status": _status(target),
        "updated_at": NOW,
        "history_seq": RUNS.c.history_seq + literal_column("1"),
    }
    if target == "running":
        values.update(attempts=RUNS.c.attempts + literal_column("1"), worker=WORKER)
    else:  # the worker is kept unless one is given
        values["worker"] = func.coalesce(WORKER, RUNS.c.worker)
    for column in sorted(extra):
        values[column] = bindparam(column, type_=EXTRA_TYPES[column])
    allowed = ALLOWED_FROM[target]
    permitted = RUNS.c.status.in_([_status(s) for s in allowed]) if allowed else false()
    change = update(RUNS).where(scoped(RUNS), RUNS.c.id == ID, permitted).values(values)
    return _logged(change, target, f"runs_move_{target}_{'_'.join(sorted(extra))}", postgres)
