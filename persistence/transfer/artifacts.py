"""The artifacts section: ``artifacts/<name>@data`` (the bytes) and ``<name>@meta.json``.

A name ``reports/2026/q1.json`` becomes ``artifacts/reports/2026/q1.json@data``: each
segment is one directory or file name (percent-encoded where needed), and the ``@``
suffix keeps a file ``a`` and a directory ``a/`` apart. ``str`` and ``json`` data are
UTF-8 text, so git shows them as text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persistence.codecs import checksum
from persistence.errors import InvalidInputError
from persistence.records import ArtifactRecord
from persistence.repositories.artifacts import (
    decode_artifact,
    validate_artifact_metadata,
    validate_content_type,
)
from persistence.transfer._core import all_pages
from persistence.transfer._files import SectionReader, SectionWriter, encode_segment
from persistence.validation import validate_artifact_name

if TYPE_CHECKING:
    from persistence.uow import UnitOfWork

__all__ = ["SECTION", "ArtifactsSection", "artifact_parts"]

DATA, META = "@data", "@meta.json"


def artifact_parts(name: str, suffix: str) -> tuple[str, ...]:
    """The path parts of artifact ``name``'s file with ``suffix`` (DATA or META)."""
    segments = [encode_segment(segment) for segment in name.split("/")]
    return (*segments[:-1], segments[-1] + suffix)


def _digest(record: ArtifactRecord) -> str:
    meta = json.dumps([record.kind, record.content_type, record.metadata], sort_keys=True)
    return f"{record.checksum}:{hashlib.sha256(meta.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class _Validated:
    record: ArtifactRecord
    root: Path
    parts: tuple[str, ...]


@dataclass(frozen=True)
class ArtifactsSection:
    name: str = "artifacts"

    def export(self, uow: UnitOfWork, out: SectionWriter) -> None:
        for record in all_pages(uow.artifacts.list, None):
            out.write(artifact_parts(record.name, DATA), uow.artifacts.load_raw(record.name))
            meta = record.model_dump(mode="json", exclude={"stored_size", "codec"})
            out.write_json(artifact_parts(record.name, META), meta)

    def read(self, src: SectionReader) -> list[_Validated]:
        files = set(src.files())
        found = []
        for parts in sorted(files):
            if parts[-1].endswith(META):
                found.append(self._read_one(src, parts, files))
            elif not parts[-1].endswith(DATA):
                raise src.fail(parts, f"unexpected file (want <name>{DATA} and <name>{META})")
            elif (*parts[:-1], parts[-1][: -len(DATA)] + META) not in files:
                raise src.fail(parts, f"has no {META} file beside it")
        return found

    def _read_one(
        self, src: SectionReader, meta_parts: tuple[str, ...], files: set[tuple[str, ...]]
    ) -> _Validated:
        meta = src.read_json(meta_parts)
        try:
            record = ArtifactRecord(**meta, stored_size=0, codec="none")
            validate_artifact_name(record.name)
            validate_artifact_metadata(record.metadata)
            validate_content_type(record.content_type, record.kind)
        except (TypeError, ValueError) as exc:  # pydantic and InvalidInputError are ValueErrors
            raise src.fail(meta_parts, f"invalid artifact metadata: {exc}") from None
        if artifact_parts(record.name, META) != meta_parts:
            raise src.fail(meta_parts, f"names artifact {record.name!r}, which belongs elsewhere")
        data_parts = artifact_parts(record.name, DATA)
        if data_parts not in files:
            raise src.fail(meta_parts, f"has no {DATA} file beside it")
        raw = src.read(data_parts)
        if checksum(raw) != record.checksum or len(raw) != record.size:
            raise src.fail(data_parts, "data does not match the checksum/size in its metadata")
        try:
            decode_artifact(record.kind, raw, what=f"artifact {record.name!r}")
        except Exception as exc:
            raise src.fail(data_parts, str(exc)) from None
        if record.created_at.tzinfo is None or record.updated_at.tzinfo is None:
            raise src.fail(meta_parts, "created_at/updated_at must carry a UTC offset")
        return _Validated(record, src.base, data_parts)

    def apply(self, uow: UnitOfWork, validated: Any) -> int:
        written = 0
        for item in validated:
            # Read again at write time (one artifact in memory at a time); the checksum
            # is checked again by import_artifact, so a file changed since validation
            # fails the whole import instead of writing something unvalidated.
            src = SectionReader(item.root.parent, item.root.name)
            raw = src.read(item.parts)
            try:  # e.g. over this database's max_artifact_bytes: still name the file
                written += uow.artifacts.import_artifact(item.record, raw)
            except InvalidInputError as exc:
                raise src.fail(item.parts, str(exc)) from exc
        return written

    def digests(self, validated: Any) -> dict[str, str]:
        return {item.record.name: _digest(item.record) for item in validated}

    def database_digests(self, uow: UnitOfWork) -> dict[str, str]:
        return {r.name: _digest(r) for r in all_pages(uow.artifacts.list, None)}


SECTION = ArtifactsSection()
