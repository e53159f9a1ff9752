"""Whole-run documents for export, import and diff: the run with its history, result,
exception, run data and deterministic values, as plain JSON-ready dicts."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select

from persistence.errors import ConflictError
from persistence.models.base import utcnow
from persistence.models.runs import Run, RunHistory, RunValue
from persistence.repositories import _runs as h
from persistence.repositories._run_values_async import AsyncRunBase
from persistence.repositories._runs import HISTORY_COLUMNS

__all__ = ["AsyncRunTransfer"]

_EXPORT_COLUMNS = (
    *h.RUN_COLUMNS,
    Run.result,
    Run.result_codec,
    Run.result_checksum,
    Run.exception_type,
    Run.exception_message,
    Run.exception_traceback,
)


def _iso(value: datetime) -> str:
    return value.isoformat()


class AsyncRunTransfer(AsyncRunBase):
    """``export_documents`` / ``import_document`` behind the runs transfer section."""

    async def export_documents(self) -> builtins.list[dict[str, Any]]:
        """Every run of the scope as a document, oldest first (three queries)."""
        runs = await self._exec(
            select(*_EXPORT_COLUMNS).where(self._where(Run)).order_by(Run.created_at, Run.id)
        )
        docs = {row.id: self._document(row) for row in runs}
        history = await self._exec(
            select(RunHistory)
            .where(self._where(RunHistory))
            .order_by(RunHistory.run_id, RunHistory.seq)
            .with_only_columns(*HISTORY_COLUMNS)
        )
        for entry in history:
            docs[entry.run_id]["history"].append(
                {
                    "seq": entry.seq,
                    "status": entry.status,
                    "at": _iso(entry.at),
                    "worker": entry.worker,
                    "note": entry.note,
                }
            )
        values = await self._exec(
            select(
                RunValue.run_id,
                RunValue.kind,
                RunValue.key,
                RunValue.value,
                RunValue.codec,
                RunValue.checksum,
            )
            .where(self._where(RunValue))
            .order_by(RunValue.run_id, RunValue.kind, RunValue.key)
        )
        for v in values:
            what = f"{v.kind} {v.key!r} of run {v.run_id!r}"
            docs[v.run_id][v.kind][v.key] = h.unpack(v.value, v.codec, v.checksum, what)
        return list(docs.values())

    def _document(self, row: Any) -> dict[str, Any]:
        record = h.run_record(row)
        result = None
        if row.result is not None:
            what = f"result of run {row.id!r}"
            result = {"value": h.unpack(row.result, row.result_codec, row.result_checksum, what)}
        exception = None
        if row.exception_type is not None:
            exception = {
                "type_name": row.exception_type,
                "message": row.exception_message,
                "traceback": row.exception_traceback,
            }
        return {
            "id": record.id,
            "workflow": record.workflow,
            "status": record.status,
            "args": record.args,
            "tags": list(record.tags),
            "parent_run_id": record.parent_run_id,
            "worker": record.worker,
            "attempts": record.attempts,
            "not_before": _iso(record.not_before),
            "created_at": _iso(record.created_at),
            "updated_at": _iso(record.updated_at),
            "result": result,
            "exception": exception,
            "history": [],
            "data": {},
            "deterministic": {},
        }

    async def import_document(self, doc: dict[str, Any], existing: dict[str, Any] | None) -> bool:
        """Write a validated run document; ``False`` if ``existing`` (the scope's document
        of that id) equals it. ConflictError when the id holds a different run."""
        self._scope.require_writable("import_document")
        if existing is not None:
            if h.canonical(existing) != h.canonical(doc):
                raise ConflictError(f"run {doc['id']!r} exists with different content")
            return False
        settings = self._scope.settings
        args = h.pack(doc["args"], "run args", settings)
        row: dict[str, Any] = {
            **self._ids(),
            "id": doc["id"],
            "workflow": doc["workflow"],
            "status": doc["status"],
            "args": args.payload,
            "args_codec": args.codec,
            "args_checksum": args.checksum,
            "tags": orjson.dumps(doc["tags"]).decode(),
            "parent_run_id": doc["parent_run_id"],
            "worker": doc["worker"],
            "attempts": doc["attempts"],
            "history_seq": len(doc["history"]),
            "not_before": datetime.fromisoformat(doc["not_before"]),
            "created_at": datetime.fromisoformat(doc["created_at"]),
            "updated_at": datetime.fromisoformat(doc["updated_at"]),
        }
        if doc["result"] is not None:
            result = h.pack(doc["result"]["value"], "run result", settings)
            row.update(
                result=result.payload, result_codec=result.codec, result_checksum=result.checksum
            )
        if doc["exception"] is not None:
            exc = doc["exception"]
            row.update(
                exception_type=exc["type_name"],
                exception_message=exc["message"],
                exception_traceback=exc["traceback"],
            )
        await self._exec(self._insert(Run).values(row))
        await self._import_children(doc)
        return True

    async def _import_children(self, doc: dict[str, Any]) -> None:
        rid, now = doc["id"], utcnow()
        entries = [
            {
                **self._ids(),
                "run_id": rid,
                "seq": e["seq"],
                "status": e["status"],
                "at": datetime.fromisoformat(e["at"]),
                "worker": e["worker"],
                "note": e["note"],
            }
            for e in doc["history"]
        ]
        await self._exec(self._insert(RunHistory).values(entries))
        values = []
        for kind in ("data", "deterministic"):
            for key, value in doc[kind].items():
                encoded = h.pack(value, f"{kind} {key!r}", self._scope.settings)
                values.append(
                    {
                        **self._ids(),
                        "run_id": rid,
                        "kind": kind,
                        "key": key,
                        "value": encoded.payload,
                        "codec": encoded.codec,
                        "checksum": encoded.checksum,
                        "updated_at": now,
                    }
                )
        if values:
            await self._exec(self._insert(RunValue).values(values))
