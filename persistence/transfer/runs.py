"""The runs section: ``runs/<run id>.json``, one document per run with its history,
result, exception, run data and deterministic values.

Importing adds missing runs exactly as exported (status, timestamps and history kept),
writes nothing for runs that are equal, and raises ConflictError when a run id holds a
different run. Workers (heartbeats) are runtime presence and are not exported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from persistence.codecs import validate_json
from persistence.errors import InvalidInputError
from persistence.repositories import _runs as h
from persistence.transfer._files import SectionReader, SectionWriter, encode_segment

if TYPE_CHECKING:
    from persistence.uow import UnitOfWork

__all__ = ["SECTION", "RunsSection"]

SUFFIX = ".json"
_KEYS = {
    "id", "workflow", "status", "args", "tags", "parent_run_id", "worker", "attempts",
    "not_before", "created_at", "updated_at", "result", "exception", "history", "data",
    "deterministic",
}  # fmt: skip


def _digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _time(value: object, what: str) -> None:
    if not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is None:
        raise InvalidInputError(f"{what} must be an ISO timestamp with a time zone")


def _optional_str(value: object, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string or null")


def validate_document(doc: Any) -> dict[str, Any]:
    """Check one run document (shape, statuses, history order); raise InvalidInputError."""
    if not isinstance(doc, dict) or set(doc) != _KEYS:
        raise InvalidInputError(
            f"a run document is an object with exactly the keys {sorted(_KEYS)}"
        )
    h.run_id(doc["id"])
    h.required_text(doc["workflow"], "workflow", 100)
    h.status(doc["status"])
    validate_json(doc["args"], what="args")
    h.tags(doc["tags"] if isinstance(doc["tags"], list) else "not-a-list")
    if doc["parent_run_id"] is not None:
        h.run_id(doc["parent_run_id"], "parent run id")
    h.text(doc["worker"], "worker", 200)
    if not isinstance(doc["attempts"], int) or doc["attempts"] < 0:
        raise InvalidInputError("attempts must be a non-negative integer")
    for key in ("not_before", "created_at", "updated_at"):
        _time(doc[key], key)
    _check_result_and_exception(doc)
    _check_history(doc)
    for kind in ("data", "deterministic"):
        if not isinstance(doc[kind], dict):
            raise InvalidInputError(f"{kind} must be an object")
        for key, value in doc[kind].items():
            h.required_text(key, f"{kind} key", 200)
            validate_json(value, what=f"{kind} {key!r}")
    return doc


def _check_result_and_exception(doc: dict[str, Any]) -> None:
    result = doc["result"]
    if result is not None:
        if not isinstance(result, dict) or set(result) != {"value"}:
            raise InvalidInputError('result must be null or {"value": ...}')
        validate_json(result["value"], what="result")
    exc = doc["exception"]
    if exc is not None:
        if not isinstance(exc, dict) or set(exc) != {"type_name", "message", "traceback"}:
            raise InvalidInputError("exception must be null or {type_name, message, traceback}")
        h.required_text(exc["type_name"], "exception type_name", 500)
        for key in ("message", "traceback"):
            if not isinstance(exc[key], str):
                raise InvalidInputError(f"exception {key} must be a string")


def _check_history(doc: dict[str, Any]) -> None:
    history = doc["history"]
    if not isinstance(history, list) or not history:
        raise InvalidInputError("history must be a non-empty list")
    for index, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or set(entry) != {"seq", "status", "at", "worker", "note"}:
            raise InvalidInputError("a history entry is {seq, status, at, worker, note}")
        if entry["seq"] != index:
            raise InvalidInputError(f"history seq must count 1, 2, ... (got {entry['seq']!r})")
        h.status(entry["status"])
        _time(entry["at"], "history at")
        _optional_str(entry["worker"], "history worker")
        _optional_str(entry["note"], "history note")
    if history[0]["status"] != "pending" or history[-1]["status"] != doc["status"]:
        raise InvalidInputError("history must start at pending and end at the run's status")


@dataclass(frozen=True)
class RunsSection:
    name: str = "runs"

    def export(self, uow: UnitOfWork, out: SectionWriter) -> None:
        for doc in uow.runs.export_documents():
            out.write_json((encode_segment(doc["id"]) + SUFFIX,), doc)

    def read(self, src: SectionReader) -> dict[str, dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = {}
        for parts in src.files():
            if len(parts) != 1 or not parts[0].endswith(SUFFIX):
                raise src.fail(parts, "unexpected file (want <run id>.json)")
            data = src.read_json(parts)
            try:
                doc = validate_document(data)
            except (InvalidInputError, ValueError) as exc:
                raise src.fail(parts, str(exc)) from None
            if encode_segment(doc["id"]) + SUFFIX != parts[0]:
                raise src.fail(parts, f"file name does not match the run id {doc['id']!r}")
            docs[doc["id"]] = doc
        return docs

    def apply(self, uow: UnitOfWork, validated: Any) -> int:
        existing = {doc["id"]: doc for doc in uow.runs.export_documents()}
        return sum(
            uow.runs.import_document(doc, existing.get(rid)) for rid, doc in validated.items()
        )

    def digests(self, validated: Any) -> dict[str, str]:
        return {rid: _digest(doc) for rid, doc in validated.items()}

    def database_digests(self, uow: UnitOfWork) -> dict[str, str]:
        return {doc["id"]: _digest(doc) for doc in uow.runs.export_documents()}


SECTION = RunsSection()
