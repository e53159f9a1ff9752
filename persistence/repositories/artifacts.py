"""Artifacts of one workspace: named bytes, text or JSON values with metadata."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple, cast

import psycopg
from sqlalchemy import Table, and_, bindparam, case, delete, func, literal_column, select

from persistence._cursor import cursor_key, encode_cursor
from persistence._executor import Statement, execute, raise_translated, run, run_one
from persistence.codecs import (
    Encoded,
    checksum,
    decode,
    encode,
    validate_codec,
)
from persistence.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from persistence.models.artifacts import Artifact
from persistence.models.base import utcnow
from persistence.records import ArtifactRecord, Page
from persistence.repositories._artifact_values import (
    DEFAULT_CONTENT_TYPES,
    decode_artifact,
    to_raw,
    validate_artifact_metadata,
    validate_content_type,
)
from persistence.repositories._base import Scope
from persistence.repositories._sql import upsert
from persistence.validation import count, validate_artifact_name, validate_text

__all__ = [
    "DEFAULT_CONTENT_TYPES",
    "ArtifactRepository",
    "decode_artifact",
    "validate_artifact_metadata",
    "validate_content_type",
]

_CHUNK_WRITE = 1024 * 1024  # bytes per write into a SQLite blob

_ART = cast(Table, Artifact.__table__)
_KEY = and_(
    _ART.c.tenant_id == bindparam("tenant_id"),
    _ART.c.workspace_id == bindparam("workspace_id"),
    _ART.c.name == bindparam("name"),
)
_WRITTEN = (
    "kind",
    "content_type",
    "user_metadata",
    "codec",
    "checksum",
    "size",
    "stored_size",
    "updated_at",
    "payload",
)


def _save(payload: Any, *returning: Any) -> Statement:
    """Insert or replace one artifact (saves and imports); returns ``created_at`` (the
    first save's) and ``returning``. ``excluded.<column>``: each value, the payload above
    all, is sent once."""
    values = {column.key: bindparam(column.key, type_=column.type) for column in _ART.c}
    values["payload"] = payload
    stmt = upsert(_ART).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[_ART.c.tenant_id, _ART.c.workspace_id, _ART.c.name],
        set_={key: stmt.excluded[key] for key in _WRITTEN},
    )
    return Statement(stmt.returning(_ART.c.created_at, *returning), "artifacts_save")


# The two real differences between the backends are how a payload travels:
# * SQLite keeps two extra copies of a large payload bound as a parameter while it builds
#   the row: the save reserves the space (zeroblob) and streams the bytes in through the
#   row's blob handle, and the load streams them out the same way (by rowid).
# * PostgreSQL's text format carries bytea as hex (twice the size): the first, prepared
#   read brings the payload only when it is small; a larger one is read in binary format,
#   in chunks, so that libpq never buffers the whole of it.
_SAVE = _save(bindparam("payload", type_=_ART.c.payload.type))
_SAVE_RESERVING = _save(func.zeroblob(bindparam("payload_size")), literal_column("rowid"))
_PG_SMALL = 64 * 1024
_LOAD = Statement(
    select(
        _ART.c.kind,
        _ART.c.codec,
        _ART.c.checksum,
        _ART.c.stored_size,
        case((_ART.c.stored_size <= literal_column(str(_PG_SMALL)), _ART.c.payload)).label(
            "payload"
        ),
    ).where(_KEY),
    "artifacts_load",
)
_LOAD_BLOB = Statement(
    select(
        literal_column("rowid").label("rowid"), _ART.c.kind, _ART.c.codec, _ART.c.checksum
    ).where(_KEY),
    "artifacts_load_blob",
)
# Chunks of one stored payload only: a concurrent replace shows as no row.
_CHUNK = Statement(
    select(func.substring(_ART.c.payload, bindparam("start"), bindparam("count"))).where(
        _KEY,
        _ART.c.checksum == bindparam("checksum"),
        _ART.c.codec == bindparam("codec"),
        _ART.c.stored_size == bindparam("stored_size"),
    ),
    "artifacts_chunk",
)
_PG_CHUNK_BYTES = 8 * 1024 * 1024


class _PayloadRow(NamedTuple):
    kind: str
    codec: str
    checksum: str
    payload: bytes


_META_COLUMNS = (
    Artifact.name,
    Artifact.kind,
    Artifact.content_type,
    Artifact.size,
    Artifact.stored_size,
    Artifact.codec,
    Artifact.checksum,
    Artifact.user_metadata,
    Artifact.created_at,
    Artifact.updated_at,
)


def _record(row: Any) -> ArtifactRecord:
    return ArtifactRecord.from_row(row, metadata=row.user_metadata)


class ArtifactRepository:
    """Save, load, describe, list and delete the artifacts of one workspace.

    Data is ``bytes``, ``str`` or a JSON value; ``load`` returns the same kind. Every
    payload is checksummed (verified on read) and compressed per the settings.
    """

    def __init__(self, scope: Scope):
        self._scope = scope
        self._t, self._w = scope.tenant_id, scope.workspace_id

    def _mine(self) -> Any:
        return and_(Artifact.tenant_id == self._t, Artifact.workspace_id == self._w)

    def _check_size(self, name: str, size: int) -> None:
        limit = self._scope.settings.max_artifact_bytes
        if size > limit:
            raise InvalidInputError(
                f"artifact {name!r} is {size} bytes, over the limit of {limit} "
                "(settings.max_artifact_bytes)"
            )

    def save(
        self,
        name: str,
        data: bytes | str | Any,
        *,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactRecord:
        """Create or replace the artifact ``name``.

        Raises InvalidInputError (bad name, non-JSON value, oversize data, bad content
        type or metadata) before anything is written.
        """
        self._scope.require_writable("save")
        validate_artifact_name(name)
        depth = self._scope.settings.max_json_depth
        meta = validate_artifact_metadata(metadata, depth)
        kind, raw = to_raw(data, depth)
        ctype = validate_content_type(content_type, kind)
        self._check_size(name, len(raw))
        s = self._scope.settings
        encoded = encode(raw, codec=s.compression, threshold=s.compression_threshold)
        del raw  # keep at most the caller's data and the stored payload alive
        now = utcnow()
        values = self._values(kind, ctype, meta, encoded, now)
        created = self._upsert(name, values, created_at=now)
        row = SimpleNamespace(**values)  # the columns just written, by name
        return ArtifactRecord.from_row(row, name=name, metadata=meta, created_at=created)

    @staticmethod
    def _values(
        kind: str, ctype: str, meta: dict[str, Any], encoded: Encoded, updated_at: datetime
    ) -> dict[str, Any]:
        """The columns written besides the key and ``created_at``."""
        return dict(
            kind=kind,
            content_type=ctype,
            user_metadata=meta,
            codec=encoded.codec,
            checksum=encoded.checksum,
            size=encoded.raw_size,
            stored_size=encoded.stored_size,
            payload=encoded.payload,
            updated_at=updated_at,
        )

    def _key(self, name: str) -> dict[str, Any]:
        return {"tenant_id": self._t, "workspace_id": self._w, "name": name}

    def _upsert(self, name: str, values: dict[str, Any], *, created_at: datetime) -> datetime:
        """Insert or replace the row; its ``created_at`` (the first save's)."""
        params = dict(values, **self._key(name), created_at=created_at)
        connection = self._scope.connection
        if self._scope.is_postgres:
            created: datetime = run(connection, _SAVE, params)[0].created_at
            return created
        payload: bytes = params.pop("payload")
        reserve = dict(params, payload_size=len(payload))
        if not payload:
            return cast(datetime, run(connection, _SAVE_RESERVING, reserve)[0].created_at)
        # The row (its checksum) and the bytes streamed into it stand or fall together: a
        # stream that fails halfway must not leave a zero-filled payload to be committed.
        with connection.begin_nested():
            row = run(connection, _SAVE_RESERVING, reserve)[0]
            with self._driver().blobopen("artifacts", "payload", row.rowid) as blob:
                view = memoryview(payload)
                for start in range(0, len(view), _CHUNK_WRITE):
                    blob.write(view[start : start + _CHUNK_WRITE])
        return cast(datetime, row.created_at)

    def _driver(self) -> Any:
        """The DB-API connection of this unit of work (same transaction)."""
        return self._scope.connection.connection.driver_connection

    def _payload_row(self, name: str) -> Any:
        validate_artifact_name(name)
        if self._scope.is_postgres:
            return self._payload_row_binary(name)
        row = run_one(self._scope.connection, _LOAD_BLOB, self._key(name))
        if row is None:
            raise NotFoundError(f"artifact {name!r} does not exist")
        # Streamed out of the row: one copy of the payload, not three.
        with self._driver().blobopen("artifacts", "payload", row.rowid, readonly=True) as blob:
            payload = blob.read()
        return _PayloadRow(row.kind, row.codec, row.checksum, payload)

    def _payload_row_binary(self, name: str) -> Any:
        # A small payload comes with the first, prepared read; a larger one in chunks.
        for _attempt in range(3):
            row = run_one(self._scope.connection, _LOAD, self._key(name))
            if row is None:
                raise NotFoundError(f"artifact {name!r} does not exist")
            kind, codec, digest, stored_size, payload = row
            del row
            if stored_size > _PG_SMALL:
                payload = self._read_chunks(name, codec, digest, stored_size)
            if payload is not None:
                return _PayloadRow(kind, codec, digest, payload)
        raise ConflictError(f"artifact {name!r} kept changing while it was read")

    def _read_chunks(self, name: str, codec: str, digest: str, stored_size: int) -> bytes | None:
        """The payload in binary format, in chunks (see ``_CHUNK``); None when it was
        replaced meanwhile."""
        connection = self._scope.connection
        sql = _CHUNK.sql(connection.dialect)
        key = dict(self._key(name), checksum=digest, codec=codec, stored_size=stored_size)
        chunks: list[bytes] = []
        read = 0
        try:
            with self._driver().cursor(binary=True) as cursor:
                while read < stored_size:
                    cursor.execute(sql, dict(key, start=read + 1, count=_PG_CHUNK_BYTES))
                    chunk = cursor.fetchone()
                    if chunk is None:  # replaced meanwhile: read the new one from the start
                        return None
                    if not chunk[0]:
                        break
                    chunks.append(chunk[0])
                    read += len(chunk[0])
                    del chunk
        except psycopg.Error as exc:
            raise_translated(connection, sql, key, exc)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def load_raw(self, name: str) -> bytes:
        """The artifact's data as bytes (UTF-8 for ``str``, JSON text for ``json``),
        checksum-verified. Raises NotFoundError, DataCorruptionError."""
        row = self._payload_row(name)
        return decode(
            row.payload, codec=row.codec, expected_checksum=row.checksum, what=f"artifact {name!r}"
        )

    def load(self, name: str) -> bytes | str | Any:
        """The data as saved: bytes, str or the JSON value.

        Raises NotFoundError, DataCorruptionError (checksum mismatch, undecodable data).
        """
        row = self._payload_row(name)
        kind, what = row.kind, f"artifact {name!r}"
        raw = decode(row.payload, codec=row.codec, expected_checksum=row.checksum, what=what)
        del row  # drop the stored (maybe compressed) payload before building the result
        return decode_artifact(kind, raw, what=what)

    def get(self, name: str) -> ArtifactRecord:
        """Metadata only (no data). Raises NotFoundError."""
        validate_artifact_name(name)
        rows = execute(
            self._scope.connection,
            select(*_META_COLUMNS).where(self._mine(), Artifact.name == name),
        )
        row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f"artifact {name!r} does not exist")
        return _record(row)

    def exists(self, name: str) -> bool:
        validate_artifact_name(name)
        stmt = select(Artifact.name).where(self._mine(), Artifact.name == name)
        return bool(execute(self._scope.connection, stmt))

    def list(
        self, prefix: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[ArtifactRecord]:
        """Metadata of the artifacts whose name starts with ``prefix``, by name, paginated."""
        limit = count(limit, "limit", minimum=1)
        stmt = select(*_META_COLUMNS).where(self._mine()).order_by(Artifact.name).limit(limit + 1)
        if prefix is not None:
            prefix = validate_text(prefix, "prefix", max_length=512, min_length=0)
            # substr, not LIKE: SQLite's LIKE ignores case and both need escaping.
            stmt = stmt.where(func.substr(Artifact.name, 1, len(prefix)) == prefix)
        if cursor is not None:
            stmt = stmt.where(Artifact.name > cursor_key(cursor))
        items = [_record(row) for row in execute(self._scope.connection, stmt)]
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1].name) if more else None)

    def delete(self, name: str) -> None:
        """Delete the artifact. Raises NotFoundError."""
        self._scope.require_writable("delete")
        validate_artifact_name(name)
        deleted = execute(
            self._scope.connection,
            delete(Artifact).where(self._mine(), Artifact.name == name).returning(Artifact.name),
        )
        if not deleted:
            raise NotFoundError(f"artifact {name!r} does not exist")

    def import_artifact(self, record: ArtifactRecord, raw: bytes) -> bool:
        """Write an exported artifact with its exact metadata and times (for import).

        ``raw`` is what :meth:`load_raw` returned. Idempotent: identical content already
        stored is a no-op (False); different content raises ConflictError. Invalid
        input raises InvalidInputError before writing.
        """
        self._scope.require_writable("import_artifact")
        name = validate_artifact_name(record.name)
        self._check_size(name, len(raw))
        if checksum(raw) != record.checksum or len(raw) != record.size:
            raise InvalidInputError(f"artifact {name!r}: data does not match its checksum/size")
        decode_artifact(record.kind, raw, what=f"artifact {name!r}")
        meta = validate_artifact_metadata(record.metadata, self._scope.settings.max_json_depth)
        ctype = validate_content_type(record.content_type, record.kind)
        validate_codec(record.codec)
        try:
            current = self.get(name)
        except NotFoundError:
            current = None
        if current is not None:
            same = (current.kind, current.checksum, current.content_type, current.metadata)
            if same != (record.kind, record.checksum, ctype, meta):
                raise ConflictError(f"artifact {name!r} already exists with different content")
            return False
        s = self._scope.settings
        encoded = encode(raw, codec=s.compression, threshold=s.compression_threshold)
        values = self._values(record.kind, ctype, meta, encoded, record.updated_at)
        self._upsert(name, values, created_at=record.created_at)
        return True
