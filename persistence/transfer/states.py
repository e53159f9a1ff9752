"""The states section: ``states/<state id>/<version>.json`` plus ``<version>.meta.json``.

Every live version is exported: the value exactly as stored (compact JSON, UTF-8) and
its metadata (parent, times, codec, checksum, sizes, tags, user metadata).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persistence.codecs import checksum, decode_json, dump_json, validate_codec, validate_json
from persistence.errors import InvalidInputError
from persistence.records import StateVersion
from persistence.transfer._core import all_pages
from persistence.transfer._files import SectionReader, SectionWriter, encode_segment

if TYPE_CHECKING:
    from persistence.uow import UnitOfWork

__all__ = ["SECTION", "StatesSection"]

VALUE, META = ".json", ".meta.json"


def _stem(version: int) -> str:
    return f"{version:06d}"


def _key(meta: StateVersion) -> str:
    return f"{meta.state_id}@{meta.version}"


def _digest(meta: StateVersion) -> str:
    extra = [sorted(meta.tags), meta.metadata, meta.parent_version]
    return f"{meta.checksum}:{hashlib.sha256(json.dumps(extra).encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class _Validated:
    meta: StateVersion
    root: Path
    parts: tuple[str, ...]


def _versions(uow: UnitOfWork) -> list[StateVersion]:
    out: list[StateVersion] = []
    for latest in all_pages(uow.states.list, None):
        out += sorted(all_pages(uow.states.list_versions, latest.state_id), key=lambda m: m.version)
    return out


@dataclass(frozen=True)
class StatesSection:
    name: str = "states"

    def export(self, uow: UnitOfWork, out: SectionWriter) -> None:
        for meta in _versions(uow):
            loaded = uow.states.load(meta.state_id, meta.version)
            if loaded is None:  # expired between listing and loading
                continue
            folder = encode_segment(meta.state_id)
            # dump_json is the serializer the checksum was taken over: same bytes again.
            out.write((folder, _stem(meta.version) + VALUE), dump_json(loaded.state))
            out.write_json((folder, _stem(meta.version) + META), meta.model_dump(mode="json"))

    def read(self, src: SectionReader) -> list[_Validated]:
        files = set(src.files())
        found = []
        for parts in sorted(files):
            if len(parts) != 2 or not parts[1].endswith(VALUE):
                raise src.fail(parts, "unexpected file (want <state>/<version>.json)")
            if parts[1].endswith(META):
                found.append(self._read_one(src, parts, files))
            elif (parts[0], parts[1][: -len(VALUE)] + META) not in files:
                raise src.fail(parts, f"has no {META} file beside it")
        return sorted(found, key=lambda v: (v.meta.state_id, v.meta.version))

    def _read_one(
        self, src: SectionReader, meta_parts: tuple[str, ...], files: set[tuple[str, ...]]
    ) -> _Validated:
        data = src.read_json(meta_parts)
        try:
            meta = StateVersion.model_validate(data)
            validate_codec(meta.codec)
            validate_json(meta.metadata, what="state metadata")
        except (TypeError, ValueError) as exc:
            raise src.fail(meta_parts, f"invalid state metadata: {exc}") from None
        expected = (encode_segment(meta.state_id), _stem(meta.version) + META)
        if expected != meta_parts:
            raise src.fail(meta_parts, f"describes {_key(meta)}, which belongs elsewhere")
        value_parts = (meta_parts[0], _stem(meta.version) + VALUE)
        if value_parts not in files:
            raise src.fail(meta_parts, f"has no {VALUE} value file beside it")
        raw = src.read(value_parts)
        if checksum(raw) != meta.checksum or len(raw) != meta.raw_size:
            raise src.fail(value_parts, "value does not match the checksum/size in its metadata")
        try:
            validate_json(decode_json(raw), what="state value")
        except Exception as exc:
            raise src.fail(value_parts, f"is not an exact JSON value: {exc}") from None
        return _Validated(meta, src.base, value_parts)

    def apply(self, uow: UnitOfWork, validated: Any) -> int:
        written = 0
        for item in validated:
            src = SectionReader(item.root.parent, item.root.name)
            raw = src.read(item.parts)
            try:  # e.g. over this database's max_state_bytes: still name the file
                written += uow.states.import_version(item.meta, decode_json(raw))
            except InvalidInputError as exc:
                raise src.fail(item.parts, str(exc)) from exc
        return written

    def digests(self, validated: Any) -> dict[str, str]:
        return {_key(item.meta): _digest(item.meta) for item in validated}

    def database_digests(self, uow: UnitOfWork) -> dict[str, str]:
        return {_key(meta): _digest(meta) for meta in _versions(uow)}


SECTION = StatesSection()
