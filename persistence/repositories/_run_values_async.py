"""The plumbing every part of the run repository shares (scope filters, Core execution,
dialect inserts, the history append), and run data, deterministic values and workers."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, literal, select
from sqlalchemy.engine import Row

from persistence import codecs
from persistence._executor_async import Statement
from persistence.errors import InvalidTypeError, NotFoundError
from persistence.models.base import utcnow
from persistence.models.runs import Run, RunValue, Worker
from persistence.records import WorkerRecord
from persistence.repositories import _run_statements as statements
from persistence.repositories import _runs as h
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._runs import RUN_COLUMNS
from persistence.repositories._sql import upsert

__all__ = ["AsyncRunBase", "AsyncRunValues"]

_Value = Any  # a JSON value


class AsyncRunBase:
    """Scope and the statements every run operation is built from.

    Statements run on the transaction's connection (``scope.connection``) through
    :mod:`persistence._executor`: the hot ones prebuilt (:mod:`._run_statements`), the
    others built per call.
    """

    def __init__(self, scope: AsyncScope):
        self._scope = scope

    def _ids(self) -> dict[str, Any]:
        return {"tenant_id": self._scope.tenant_id, "workspace_id": self._scope.workspace_id}

    def _where(self, model: Any) -> ColumnElement[bool]:
        return and_(
            model.tenant_id == self._scope.tenant_id,
            model.workspace_id == self._scope.workspace_id,
        )

    async def _exec(self, statement: Any) -> _Rows:
        """Run a statement built per call (errors translated); its rows."""
        return _Rows(await self._scope.execute(statement))

    async def _first(self, statement: Any) -> Any:
        """The first row of a statement built per call, or None."""
        rows = await self._exec(statement)
        return rows.first()

    async def _run(self, statement: Statement, params: dict[str, Any]) -> Any:
        """The first row of a prebuilt statement (:mod:`._run_statements`), or None."""
        return await self._scope.run_one(statement, params)

    def _insert(self, model: Any) -> Any:
        return upsert(model)

    async def _row(self, rid: str) -> Any:
        row = await self._first(select(*RUN_COLUMNS).where(self._where(Run), Run.id == rid))
        if row is None:
            raise NotFoundError(f"run {rid!r} does not exist")
        return row

    async def _logged(self, change: Statement, status: str, params: dict[str, Any]) -> Any:
        """Run ``change`` (of one run) and its history entry; the changed run or None.

        One statement on PostgreSQL; on SQLite the entry follows the change.
        """
        row = await self._run(change, params)
        if row is not None and not self._scope.is_postgres:
            entry = dict(params, id=row.id, history_seq=row.history_seq)
            await self._run(statements.logger(status), entry)
        return row


class _Rows(list[Any]):
    """Rows of :func:`persistence._executor.execute` with the accessors used here."""

    def first(self) -> Any:
        return self[0] if self else None

    def one(self) -> Any:
        if len(self) != 1:
            raise NotFoundError(f"expected one row, got {len(self)}")
        return self[0]


class AsyncRunValues(AsyncRunBase):
    """Run data, deterministic values and the workers registry of ``uow.runs``."""

    # -- run data and deterministic values -------------------------------------------

    async def get_data(self, run_id: str, key: str, default: _Value = None) -> _Value:
        """The run data value under ``key``, or ``default``."""
        return await self._value(
            h.run_id(run_id), "data", h.required_text(key, "key", 200), default
        )

    async def set_data(self, run_id: str, key: str, value: _Value) -> None:
        """Store (or replace) the JSON run data value under ``key``."""
        self._scope.require_writable("set_data")
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
        if await self._first(statement) is None:
            raise NotFoundError(f"run {rid!r} does not exist")

    async def deterministic(self, run_id: str, key: str, factory: Callable[[], _Value]) -> _Value:
        """The value stored under ``key`` the first time; on that first call ``factory()``
        is called and stored. Concurrent first calls store one value and all return it."""
        self._scope.require_writable("deterministic")
        rid, name = h.run_id(run_id), h.required_text(key, "key", 200)
        make = h.factory(factory)
        missing = object()
        found = await self._value(rid, "deterministic", name, missing)
        if found is not missing:
            return found
        encoded = h.pack(make(), f"deterministic value {name!r}", self._scope.settings)
        statement = self._value_insert(rid, "deterministic", name, encoded)
        # The loser of a race inserts nothing (on PostgreSQL it waits for the winner's
        # commit first) and reads the winner's value below.
        await self._exec(statement.on_conflict_do_nothing())
        return await self._value(rid, "deterministic", name, None)

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

    async def _value(self, rid: str, kind: str, key: str, default: _Value) -> _Value:
        joined = and_(
            RunValue.tenant_id == Run.tenant_id,
            RunValue.workspace_id == Run.workspace_id,
            RunValue.run_id == Run.id,
            RunValue.kind == kind,
            RunValue.key == key,
        )
        row = await self._first(
            select(Run.id, RunValue.value, RunValue.codec, RunValue.checksum)
            .outerjoin(RunValue, joined)
            .where(self._where(Run), Run.id == rid)
        )
        if row is None:
            raise NotFoundError(f"run {rid!r} does not exist")
        if row.value is None:
            return default
        return h.unpack(row.value, row.codec, row.checksum, f"{kind} {key!r} of run {rid!r}")

    # -- workers -------------------------------------------------------------------

    async def register_worker(self, name: str, info: dict[str, Any] | None = None) -> WorkerRecord:
        """Register ``name`` (or refresh it): store its JSON ``info`` and heartbeat now."""
        self._scope.require_writable("register_worker")
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
        rows = await self._exec(statement)
        return _worker_record(rows.one())

    async def workers(self) -> builtins.list[WorkerRecord]:
        """Every registered worker with its last heartbeat, by name."""
        rows = await self._exec(
            select(Worker.name, Worker.info, Worker.registered_at, Worker.heartbeat_at)
            .where(self._where(Worker))
            .order_by(Worker.name)
        )
        return [_worker_record(row) for row in rows]


def _worker_record(row: Row[Any]) -> WorkerRecord:
    return WorkerRecord.model_construct(
        name=row.name,
        info=codecs.decode_json(row.info, what=f"info of worker {row.name!r}"),
        registered_at=row.registered_at,
        heartbeat_at=row.heartbeat_at,
    )
