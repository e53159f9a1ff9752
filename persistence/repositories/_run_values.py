"""The plumbing every part of the run repository shares (scope filters, Core execution,
dialect inserts, the history append), and run data, deterministic values and workers."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from persistence import codecs
from persistence._driver import fetch
from persistence.errors import InvalidTypeError, NotFoundError, translate_errors
from persistence.models.base import utcnow
from persistence.models.runs import Run, RunHistory, RunValue, Worker
from persistence.records import WorkerRecord
from persistence.repositories import _runs as h
from persistence.repositories._base import Scope
from persistence.repositories._runs import RUN_COLUMNS

__all__ = ["RunValues"]

_Value = Any  # a JSON value


class RunBase:
    """Scope and the statements every run operation is built from.

    Statements run on the transaction's connection (``scope.connection``), never
    through the ORM session; the PostgreSQL hot paths run prepared on the driver
    (:meth:`_fetch`).
    """

    def __init__(self, scope: Scope):
        self._scope = scope
        # The parameters of the PostgreSQL statements in :mod:`._runs_pg`.
        self._pg_ids = {"t": scope.tenant_id, "w": scope.workspace_id}

    def _ids(self) -> dict[str, Any]:
        return {"tenant_id": self._scope.tenant_id, "workspace_id": self._scope.workspace_id}

    def _where(self, model: Any) -> ColumnElement[bool]:
        return and_(
            model.tenant_id == self._scope.tenant_id,
            model.workspace_id == self._scope.workspace_id,
        )

    def _exec(self, statement: Any) -> CursorResult[Any]:
        with translate_errors():
            # Core on the connection: no ORM session (its begin/commit, its synchronisation).
            return cast(CursorResult[Any], self._scope.connection.execute(statement))

    def _fetch(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """PostgreSQL: the first row of a prepared statement of :mod:`._runs_pg`, or None."""
        with translate_errors():
            rows = fetch(self._scope.connection, sql, params)
        return rows[0] if rows else None

    def _insert(self, model: Any) -> Any:
        return (postgresql if self._scope.is_postgres else sqlite).insert(model)

    def _row(self, rid: str) -> Row[Any]:
        row = self._exec(select(*RUN_COLUMNS).where(self._where(Run), Run.id == rid)).first()
        if row is None:
            raise NotFoundError(f"run {rid!r} does not exist")
        return row

    def _update_logged(
        self, statement: Any, status: str, at: datetime, worker: str | None, note: str | None
    ) -> Row[Any] | None:
        """SQLite: run an UPDATE of one run and append its history entry; the updated row
        or None. (PostgreSQL does both in one statement of :mod:`._runs_pg`.)"""
        row = self._exec(statement.returning(*RUN_COLUMNS)).first()
        if row is not None:
            self._append_history(row.id, row.history_seq, status, at, worker, note)
        return row

    def _append_history(
        self, rid: str, seq: int, status: str, at: datetime, worker: str | None, note: str | None
    ) -> None:
        self._exec(
            self._insert(RunHistory).values(
                **self._ids(),
                run_id=rid,
                seq=seq,
                status=status,
                at=at,
                worker=worker,
                note=note,
            )
        )


class RunValues(RunBase):
    """Run data, deterministic values and the workers registry of ``uow.runs``."""

    # -- run data and deterministic values -------------------------------------------

    def get_data(self, run_id: str, key: str, default: _Value = None) -> _Value:
        """The run data value under ``key``, or ``default``."""
        return self._value(h.run_id(run_id), "data", h.required_text(key, "key", 200), default)

    def set_data(self, run_id: str, key: str, value: _Value) -> None:
        """Store (or replace) the JSON run data value under ``key``."""
        rid, name = h.run_id(run_id), h.required_text(key, "key", 200)
        encoded = h.pack(value, f"run data {name!r}", self._scope.settings)
        statement = self._value_insert(rid, "data", name, encoded)
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "workspace_id", "run_id", "kind", "key"],
            set_={
                "value": encoded.payload,
                "codec": encoded.codec,
                "checksum": encoded.checksum,
                "updated_at": utcnow(),
            },
        ).returning(RunValue.key)
        if self._exec(statement).first() is None:
            raise NotFoundError(f"run {rid!r} does not exist")

    def deterministic(self, run_id: str, key: str, factory: Callable[[], _Value]) -> _Value:
        """The value stored under ``key`` the first time; on that first call ``factory()``
        is called and stored. Concurrent first calls store one value and all return it."""
        rid, name = h.run_id(run_id), h.required_text(key, "key", 200)
        make = h.factory(factory)
        missing = object()
        found = self._value(rid, "deterministic", name, missing)
        if found is not missing:
            return found
        encoded = h.pack(make(), f"deterministic value {name!r}", self._scope.settings)
        statement = self._value_insert(rid, "deterministic", name, encoded)
        # The loser of a race inserts nothing (on PostgreSQL it waits for the winner's
        # commit first) and reads the winner's value below.
        self._exec(statement.on_conflict_do_nothing())
        return self._value(rid, "deterministic", name, None)

    def _value_insert(self, rid: str, kind: str, key: str, encoded: Any) -> Any:
        # INSERT ... SELECT FROM runs: inserts nothing when the run does not exist.
        source = select(
            Run.tenant_id,
            Run.workspace_id,
            Run.id,
            literal(kind),
            literal(key),
            literal(encoded.payload, RunValue.value.type),
            literal(encoded.codec),
            literal(encoded.checksum),
            literal(utcnow(), RunValue.updated_at.type),
        ).where(self._where(Run), Run.id == rid)
        columns = [
            "tenant_id",
            "workspace_id",
            "run_id",
            "kind",
            "key",
            "value",
            "codec",
            "checksum",
            "updated_at",
        ]
        return self._insert(RunValue).from_select(columns, source)

    def _value(self, rid: str, kind: str, key: str, default: _Value) -> _Value:
        joined = and_(
            RunValue.tenant_id == Run.tenant_id,
            RunValue.workspace_id == Run.workspace_id,
            RunValue.run_id == Run.id,
            RunValue.kind == kind,
            RunValue.key == key,
        )
        row = self._exec(
            select(Run.id, RunValue.value, RunValue.codec, RunValue.checksum)
            .outerjoin(RunValue, joined)
            .where(self._where(Run), Run.id == rid)
        ).first()
        if row is None:
            raise NotFoundError(f"run {rid!r} does not exist")
        if row.value is None:
            return default
        return h.unpack(row.value, row.codec, row.checksum, f"{kind} {key!r} of run {rid!r}")

    # -- workers -------------------------------------------------------------------

    def register_worker(self, name: str, info: dict[str, Any] | None = None) -> WorkerRecord:
        """Register ``name`` (or refresh it): store its JSON ``info`` and heartbeat now."""
        checked = h.required_text(name, "worker name", 200)
        data = {} if info is None else info
        if not isinstance(data, dict):
            raise InvalidTypeError("worker info must be a dict")
        depth = self._scope.settings.max_json_depth
        payload = codecs.dump_json(data, what="worker info", max_depth=depth)
        now = utcnow()
        statement = (
            self._insert(Worker)
            .values(
                **self._ids(),
                name=checked,
                info=payload.decode(),
                registered_at=now,
                heartbeat_at=now,
            )
            .on_conflict_do_update(
                index_elements=["tenant_id", "workspace_id", "name"],
                set_={"info": payload.decode(), "heartbeat_at": now},
            )
            .returning(Worker.name, Worker.info, Worker.registered_at, Worker.heartbeat_at)
        )
        return _worker_record(self._exec(statement).one())

    def workers(self) -> builtins.list[WorkerRecord]:
        """Every registered worker with its last heartbeat, by name."""
        rows = self._exec(
            select(Worker.name, Worker.info, Worker.registered_at, Worker.heartbeat_at)
            .where(self._where(Worker))
            .order_by(Worker.name)
        ).all()
        return [_worker_record(row) for row in rows]


def _worker_record(row: Row[Any]) -> WorkerRecord:
    return WorkerRecord.model_construct(
        name=row.name,
        info=codecs.decode_json(row.info, what=f"info of worker {row.name!r}"),
        registered_at=row.registered_at,
        heartbeat_at=row.heartbeat_at,
    )
