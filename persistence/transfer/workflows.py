"""The workflows section: ``workflows/<name>/<revision>.py`` plus ``<revision>.json``.

The ``.py`` file is the source byte-for-byte (UTF-8); the JSON beside it holds the
revision's description, tags, checksum and creation time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from persistence.errors import InvalidInputError
from persistence.records import WorkflowRecord
from persistence.repositories.workflows import validate_revision, validate_source
from persistence.transfer._core import all_pages
from persistence.transfer._files import SectionReader, SectionWriter, decode_segment, encode_segment
from persistence.validation import validate_workflow_name

if TYPE_CHECKING:
    from persistence.uow import UnitOfWork

__all__ = ["SECTION", "WorkflowsSection"]


def _key(record: WorkflowRecord) -> str:
    return f"{record.name}@{record.revision}"


def _digest(record: WorkflowRecord) -> str:
    meta = json.dumps([record.description, list(record.tags)], ensure_ascii=False)
    return f"{record.checksum}:{hashlib.sha256(meta.encode()).hexdigest()[:16]}"


def _stem(revision: int) -> str:
    return f"{revision:06d}"


@dataclass(frozen=True)
class WorkflowsSection:
    name: str = "workflows"

    def export(self, uow: UnitOfWork, out: SectionWriter) -> None:
        for head in all_pages(uow.workflows.list):
            for rec in uow.workflows.revisions(head.name):
                folder = encode_segment(rec.name)
                out.write((folder, _stem(rec.revision) + ".py"), rec.source.encode("utf-8"))
                meta = {
                    "revision": rec.revision,
                    "description": rec.description,
                    "tags": list(rec.tags),
                    "checksum": rec.checksum,
                    "created_at": rec.created_at.isoformat(),
                }
                out.write_json((folder, _stem(rec.revision) + ".json"), meta)

    def read(self, src: SectionReader) -> list[WorkflowRecord]:
        files = set(src.files())
        records = []
        for parts in sorted(files):
            if len(parts) != 2 or not parts[1].endswith((".py", ".json")):
                raise src.fail(parts, "unexpected file (want <name>/<revision>.py and .json)")
            if parts[1].endswith(".py"):
                meta_parts = (parts[0], parts[1][:-3] + ".json")
                if meta_parts not in files:
                    raise src.fail(parts, f"has no metadata file {meta_parts[1]}")
                records.append(self._read_one(src, parts, meta_parts))
            elif (parts[0], parts[1][:-5] + ".py") not in files:
                raise src.fail(parts, "has no source file beside it")
        return sorted(records, key=lambda r: (r.name, r.revision))

    def _read_one(
        self, src: SectionReader, py: tuple[str, ...], meta_parts: tuple[str, ...]
    ) -> WorkflowRecord:
        try:
            name = validate_workflow_name(decode_segment(py[0]))
            if encode_segment(name) != py[0]:
                raise InvalidInputError("the directory name is not in canonical form")
            source = validate_source(src.read(py).decode("utf-8"))
        except (InvalidInputError, UnicodeDecodeError) as exc:
            raise src.fail(py, str(exc)) from None
        meta = src.read_json(meta_parts)
        try:
            record = WorkflowRecord(
                name=name,
                revision=meta["revision"],
                source=source,
                description=meta["description"],
                tags=tuple(meta["tags"]),
                checksum=meta["checksum"],
                created_at=datetime.fromisoformat(meta["created_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise src.fail(meta_parts, f"invalid workflow metadata: {exc}") from None
        if _stem(record.revision) != py[1][:-3]:
            raise src.fail(meta_parts, f"revision {record.revision} does not match the file name")
        try:
            return validate_revision(record)
        except InvalidInputError as exc:
            raise src.fail(meta_parts, str(exc)) from None

    def apply(self, uow: UnitOfWork, validated: Any) -> int:
        return sum(uow.workflows.import_revision(rec) for rec in validated)

    def digests(self, validated: Any) -> dict[str, str]:
        return {_key(rec): _digest(rec) for rec in validated}

    def database_digests(self, uow: UnitOfWork) -> dict[str, str]:
        out = {}
        for head in all_pages(uow.workflows.list):
            for rec in uow.workflows.revisions(head.name):
                out[_key(rec)] = _digest(rec)
        return out


SECTION = WorkflowsSection()
