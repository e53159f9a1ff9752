"""Workflow runs: start, status machine with history, results, exceptions, run data,
deterministic values, claiming by many workers, listing, purge and the workers registry."""

from __future__ import annotations

import builtins
import traceback
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Select,
    and_,
    any_,
    delete,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import aliased

from persistence.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
)
from persistence.models.base import new_id, utcnow
from persistence.models.runs import Run, RunHistory
from persistence.records import (
    Page,
    RunExceptionRecord,
    RunHistoryRecord,
    RunRecord,
)
from persistence.repositories import _run_statements as statements
from persistence.repositories import _runs as h
from persistence.repositories._run_export_async import AsyncRunTransfer
from persistence.repositories._run_values_async import AsyncRunValues
from persistence.repositories._runs import ALLOWED_FROM, FINISHED, HISTORY_COLUMNS, RUN_COLUMNS

__all__ = ["ALLOWED_FROM", "FINISHED", "AsyncRunRepository"]

_Value = Any  # a JSON value


class AsyncRunRepository(AsyncRunValues, AsyncRunTransfer):
    """Runs of the unit of work's tenant and workspace (``uow.runs``).

    Every method filters by tenant and workspace. An unknown run id raises
    NotFoundError; a value that is not exact JSON raises InvalidInputError before
    anything is written; an illegal status change raises ConflictError.
    """

    # -- starting and reading ------------------------------------------------------

    async def start(
        self,
        workflow: str,
        *,
        args: _Value = None,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        tags: Iterable[str] = (),
    ) -> RunRecord:
        """Create a ``pending`` run of ``workflow`` (a workflow of this workspace).

        With ``run_id`` the call is idempotent: the same id with the same workflow, args
        and parent returns the existing run; with different ones AlreadyExistsError.
        Raises NotFoundError (unknown workflow or parent run), InvalidInputError.
        """
        self._scope.require_writable("start")
        name = h.required_text(workflow, "workflow name", 100)
        rid = h.run_id(run_id) if run_id is not None else new_id().hex
        parent = h.run_id(parent_run_id, "parent run id") if parent_run_id is not None else None
        encoded = h.pack(args, "run args", self._scope.settings)
        tags_json = orjson.dumps(h.tags(tags)).decode()
        now = utcnow()
        params = {
            **self._ids(),
            "id": rid,
            "workflow": name,
            "parent": parent,
            "args": encoded.payload,
            "codec": encoded.codec,
            "checksum": encoded.checksum,
            "tags": tags_json,
            "now": now,
        }
        if self._scope.is_postgres:  # checks, run and history in one statement
            row = await self._run(statements.START, params)
            self._require_references(name, parent, row.workflow_found, row.parent_found)
            started = None if row.id is None else row
        else:
            refs = await self._run(statements.REFERENCES, params)
            self._require_references(name, parent, refs.workflow_found, refs.parent_found)
            started = await self._run(statements.START_RUN, params)
            if started is not None:
                await self._run(statements.LOG_STARTED, dict(params, history_seq=1))
        if started is None:
            return await self._same_run(rid, name, args, parent)
        return h.run_record(started)

    @staticmethod
    def _require_references(
        workflow: str, parent: str | None, workflow_found: bool, parent_found: bool
    ) -> None:
        if not workflow_found:
            raise NotFoundError(f"workflow {workflow!r} does not exist in this workspace")
        if not parent_found:
            raise NotFoundError(f"parent run {parent!r} does not exist")

    async def _same_run(
        self, rid: str, workflow: str, args: _Value, parent: str | None
    ) -> RunRecord:
        record = h.run_record(await self._row(rid))
        same = (
            record.workflow == workflow
            and record.parent_run_id == parent
            and h.canonical(record.args) == h.canonical(args)
        )
        if not same:
            raise AlreadyExistsError(
                f"run {rid!r} already exists with a different workflow, args or parent"
            )
        return record

    async def get(self, run_id: str) -> RunRecord:
        """The run; NotFoundError if there is none."""
        return h.run_record(await self._row(h.run_id(run_id)))

    async def history(self, run_id: str) -> builtins.list[RunHistoryRecord]:
        """Every status change of the run, oldest first (``seq`` 1, 2, ...)."""
        rid = h.run_id(run_id)
        rows = await self._exec(
            select(*HISTORY_COLUMNS)
            .where(self._where(RunHistory), RunHistory.run_id == rid)
            .order_by(RunHistory.seq)
        )
        if not rows:  # every run has its "pending" entry
            raise NotFoundError(f"run {rid!r} does not exist")
        return [h.history_record(row) for row in rows]

    async def list(
        self,
        status: str | None = None,
        workflow: str | None = None,
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[RunRecord]:
        """Runs newest first, optionally of one status and/or workflow, one page at a time."""
        size = h.limit(limit)
        query = select(*RUN_COLUMNS).where(self._where(Run))
        if status is not None:
            query = query.where(Run.status == h.status(status))
        if workflow is not None:
            query = query.where(Run.workflow == h.required_text(workflow, "workflow name", 100))
        if cursor is not None:
            at, rid = h.decode_cursor(cursor)
            query = query.where(or_(Run.created_at < at, and_(Run.created_at == at, Run.id < rid)))
        query = query.order_by(Run.created_at.desc(), Run.id.desc()).limit(size + 1)
        rows = await self._exec(query)
        items = [h.run_record(row) for row in rows[:size]]
        more = len(rows) > size
        return Page[RunRecord](
            items=items,
            next_cursor=h.encode_cursor(items[-1].created_at, items[-1].id) if more else None,
        )

    async def children(self, run_id: str) -> builtins.list[RunRecord]:
        """Runs started with ``parent_run_id=run_id``, oldest first."""
        rid = h.run_id(run_id)
        rows = await self._exec(
            select(*RUN_COLUMNS)
            .where(self._where(Run), Run.parent_run_id == rid)
            .order_by(Run.created_at, Run.id)
        )
        if not rows:
            await self._row(rid)  # NotFoundError for an unknown parent
        return [h.run_record(row) for row in rows]

    # -- the status machine ----------------------------------------------------------

    async def transition(
        self,
        run_id: str,
        status: str,
        *,
        worker: str | None = None,
        note: str | None = None,
        retry_at: datetime | timedelta | None = None,
    ) -> RunRecord:
        """Move the run to ``status`` and append a history entry.

        Allowed: pending -> running | cancelled; running -> succeeded | failed |
        retrying | cancelled; retrying -> running. ``retry_at`` (only with
        ``retrying``; a datetime or a delay) is when ``claim`` may take it again,
        default now. Raises ConflictError naming from and to for an illegal move.
        """
        target = h.status(status)
        extra: dict[str, Any] = {}
        if retry_at is not None:
            if target != "retrying":
                raise InvalidInputError("retry_at is only allowed with status 'retrying'")
            extra["not_before"] = h.when(retry_at, "retry_at")
        elif target == "retrying":
            extra["not_before"] = utcnow()
        return await self._move(h.run_id(run_id), target, worker, note, extra)

    async def _move(
        self, rid: str, target: str, worker: str | None, note: str | None, extra: dict[str, Any]
    ) -> RunRecord:
        self._scope.require_writable(
            {"succeeded": "set_result", "failed": "set_exception"}.get(target, "transition")
        )
        worker = h.text(worker, "worker", 200)
        note = h.text(note, "note", 10_000)
        params = {**self._ids(), "id": rid, "now": utcnow(), "worker": worker, "note": note}
        change = statements.move(target, frozenset(extra), self._scope.is_postgres)
        row = await self._logged(change, target, {**params, **extra})
        if row is None:
            current = await self._row(rid)
            raise ConflictError(f"run {rid!r}: illegal transition {current.status} -> {target}")
        return h.run_record(row)

    async def claim(self, *, workflow: str | None = None, worker: str) -> RunRecord | None:
        """Atomically take the oldest due run and mark it ``running`` for ``worker``.

        Due: ``pending``, or ``retrying`` with its ``retry_at`` passed (runs are taken in
        ``not_before`` order; a pending run's is its creation time). ``None`` when there
        is none. PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers never wait on each
        other; SQLite: the unit of work's immediate transaction serializes claimers.
        """
        self._scope.require_writable("claim")
        name = h.required_text(worker, "worker", 200)
        wanted = None if workflow is None else h.required_text(workflow, "workflow name", 100)
        params = {**self._ids(), "now": utcnow(), "worker": name, "note": "claimed"}
        if wanted is not None:
            params["workflow"] = wanted
        change = statements.claim(wanted is not None, self._scope.is_postgres)
        row = await self._logged(change, "running", params)
        return None if row is None else h.run_record(row)

    # -- results and exceptions ------------------------------------------------------

    async def set_result(
        self, run_id: str, value: _Value, *, worker: str | None = None, note: str | None = None
    ) -> RunRecord:
        """Store the JSON result and mark the running run ``succeeded``."""
        encoded = h.pack(value, "run result", self._scope.settings)
        extra = {
            "result": encoded.payload,
            "result_codec": encoded.codec,
            "result_checksum": encoded.checksum,
        }
        return await self._move(h.run_id(run_id), "succeeded", worker, note, extra)

    async def get_result(self, run_id: str) -> _Value:
        """The stored result; NotFoundError if the run is unknown or has no result yet."""
        rid = h.run_id(run_id)
        row = await self._first(
            select(Run.status, Run.result, Run.result_codec, Run.result_checksum).where(
                self._where(Run), Run.id == rid
            )
        )
        if row is None:
            raise NotFoundError(f"run {rid!r} does not exist")
        if row.result is None:
            raise NotFoundError(f"run {rid!r} has no result (status {row.status})")
        return h.unpack(row.result, row.result_codec, row.result_checksum, f"result of {rid!r}")

    async def set_exception(
        self,
        run_id: str,
        exc: BaseException,
        *,
        worker: str | None = None,
        note: str | None = None,
    ) -> RunRecord:
        """Store the exception as text (qualified type name, message, traceback with its
        chained causes) and mark the running run ``failed``. Nothing is pickled."""
        if not isinstance(exc, BaseException):
            raise InvalidTypeError(f"exc must be an exception, not {type(exc).__name__}")
        extra = {
            "exception_type": h.storable(h.type_name(exc)),
            "exception_message": h.storable(h.message(exc)),
            "exception_traceback": h.storable("".join(traceback.format_exception(exc))),
        }
        return await self._move(h.run_id(run_id), "failed", worker, note, extra)

    async def get_exception(self, run_id: str) -> RunExceptionRecord | None:
        """The stored exception, ``None`` if the run has none (NotFoundError if unknown)."""
        rid = h.run_id(run_id)
        row = await self._first(
            select(Run.exception_type, Run.exception_message, Run.exception_traceback).where(
                self._where(Run), Run.id == rid
            )
        )
        if row is None:
            raise NotFoundError(f"run {rid!r} does not exist")
        if row.exception_type is None:
            return None
        return RunExceptionRecord.model_construct(
            type_name=row.exception_type,
            message=row.exception_message or "",
            traceback=row.exception_traceback or "",
        )

    # -- purge ---------------------------------------------------------------------

    async def purge(
        self,
        older_than: datetime | timedelta,
        statuses: Iterable[str] = FINISHED,
        batch_size: int | None = None,
    ) -> int:
        """Delete finished runs whose last change is older than ``older_than`` (a datetime,
        or an age), with their history and values; return how many runs were deleted.

        Deletes in batches of ``batch_size`` (default ``Settings.gc_batch_size``), each
        one bounded DELETE statement. Only finished statuses may be purged.
        """
        self._scope.require_writable("purge")
        cutoff = h.ago(older_than, "older_than")
        wanted = h.statuses(statuses)
        if not wanted or not set(wanted) <= set(FINISHED):
            raise InvalidInputError(f"purge only finished runs: statuses must be in {FINISHED}")
        size = batch_size if batch_size is not None else self._scope.settings.gc_batch_size
        h.limit(size)
        purgeable = and_(self._where(Run), Run.status.in_(wanted), Run.updated_at < cutoff)
        if self._scope.is_postgres:
            # Rows are addressed by ctid: ARRAY(subquery) runs once and a TID scan deletes
            # exactly those rows, whatever the planner believes about the table (right after
            # a bulk load, with no statistics yet, an IN (subquery) plan can go quadratic).
            # The outer conditions are re-checked should a row have changed meanwhile.
            b = aliased(Run, name="batch")
            ctids: Select[Any] = select(literal_column("batch.ctid")).select_from(b)
            ctids = ctids.where(self._where(b), b.status.in_(wanted), b.updated_at < cutoff)
            ctids = ctids.limit(size)
            chosen = literal_column("runs.ctid") == any_(func.array(ctids.scalar_subquery()))
        else:
            chosen = Run.id.in_(select(Run.id).where(purgeable).limit(size))
        statement = delete(Run).where(purgeable, chosen)
        total = 0
        while True:
            deleted = len(await self._exec(statement.returning(Run.id)))
            total += deleted
            if deleted < size:
                return total
