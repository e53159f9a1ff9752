"""Artifacts of one workspace: named bytes, text or JSON values with metadata."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import and_, delete, func, literal_column, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from persistence._cursor import cursor_key, encode_cursor
from persistence._driver import fetch, json_param, utc
from persistence.codecs import (
    MAX_JSON_DEPTH,
    Encoded,
    checksum,
    decode,
    decode_json,
    dump_json,
    encode,
    validate_codec,
    validate_metadata,
)
from persistence.errors import (
    ConflictError,
    DataCorruptionError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
)
from persistence.models.artifacts import Artifact
from persistence.models.base import utcnow
from persistence.records import ArtifactKind, ArtifactRecord, Page
from persistence.repositories._base import Scope
from persistence.validation import count, validate_artifact_name, validate_text

__all__ = [
    "DEFAULT_CONTENT_TYPES",
    "ArtifactRepository",
    "decode_artifact",
    "validate_artifact_metadata",
    "validate_content_type",
]

#: The content type recorded when the caller gives none.
DEFAULT_CONTENT_TYPES: dict[str, str] = {
    "bytes": "application/octet-stream",
    "str": "text/plain; charset=utf-8",
    "json": "application/json",
}
_CHUNK = 1024 * 1024

# PostgreSQL: save and the first read of load are prepared statements on the unit of
# work's driver connection (persistence._driver.fetch), without SQLAlchemy or the
# session. The payload comes with the first read only when it is small: that cursor
# reads text format, which carries bytea as hex (twice the size). A larger payload is
# then read in binary format, in chunks so that libpq never buffers the whole of it.
_PG_SMALL = 64 * 1024
_PG_LOAD = f"""SELECT kind, codec, checksum, stored_size,
       CASE WHEN stored_size <= {_PG_SMALL} THEN payload END
FROM artifacts WHERE tenant_id = %s::uuid AND workspace_id = %s::uuid AND name = %s::text"""
# Insert or replace (saves and imports). Parameters: those of ArtifactRepository._values
# (user_metadata as JSON text), tenant_id, workspace_id, name and created_at.
_PG_SAVE = """INSERT INTO artifacts
    (tenant_id, workspace_id, name, kind, content_type, user_metadata, codec, checksum,
     size, stored_size, created_at, updated_at, payload)
VALUES (%(tenant_id)s::uuid, %(workspace_id)s::uuid, %(name)s::text, %(kind)s::text,
        %(content_type)s::text, %(user_metadata)s::json, %(codec)s::text,
        %(checksum)s::text, %(size)s::bigint, %(stored_size)s::bigint,
        %(created_at)s::timestamptz, %(updated_at)s::timestamptz, %(payload)s::bytea)
ON CONFLICT (tenant_id, workspace_id, name) DO UPDATE SET
    kind = excluded.kind, content_type = excluded.content_type,
    user_metadata = excluded.user_metadata, codec = excluded.codec,
    checksum = excluded.checksum, size = excluded.size, stored_size = excluded.stored_size,
    updated_at = excluded.updated_at, payload = excluded.payload
RETURNING created_at"""
# Chunks of one stored payload only: a concurrent replace shows as no row.
_PG_CHUNK = (
    "SELECT substring(payload FROM %s FOR %s) FROM artifacts "
    "WHERE tenant_id = %s AND workspace_id = %s AND name = %s "
    "AND checksum = %s AND codec = %s AND stored_size = %s"
)
_PG_CHUNK_BYTES = 8 * 1024 * 1024


class _PayloadRow(NamedTuple):
    kind: str
    codec: str
    checksum: str
    payload: bytes


_CONTENT_TYPE = re.compile(r"[!-~][ -~]{0,254}")  # printable ASCII, at most 255

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
    return ArtifactRecord.model_construct(
        name=row.name,
        kind=row.kind,
        content_type=row.content_type,
        size=row.size,
        stored_size=row.stored_size,
        codec=row.codec,
        checksum=row.checksum,
        metadata=row.user_metadata,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _to_raw(data: object, max_depth: int = MAX_JSON_DEPTH) -> tuple[ArtifactKind, bytes]:
    """The bytes that are stored for ``data`` and its kind (no copy for ``bytes``).

    ``bytearray`` and ``memoryview`` are binary data too: they load back as ``bytes``."""
    if isinstance(data, bytes):
        return "bytes", data
    if isinstance(data, bytearray | memoryview):
        return "bytes", bytes(data)
    if isinstance(data, str):
        try:
            return "str", data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"artifact text is not valid UTF-8: {exc.reason}") from None
    return "json", dump_json(data, what="artifact value", max_depth=max_depth)


def decode_artifact(kind: str, raw: bytes, *, what: str = "artifact") -> Any:
    """Turn stored raw bytes back into the kind they were saved as."""
    if kind == "bytes":
        return raw
    if kind == "json":
        return decode_json(raw, what=what)  # DataCorruptionError if it does not parse
    try:
        if kind == "str":
            return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataCorruptionError(f"{what}: does not decode as {kind}: {exc}") from exc
    raise DataCorruptionError(f"{what}: unknown kind {kind!r}")


def validate_content_type(value: object, kind: str) -> str:
    if value is None:
        return DEFAULT_CONTENT_TYPES[kind]
    if not isinstance(value, str):
        raise InvalidTypeError(f"content_type must be a str, not {type(value).__name__}")
    if not _CONTENT_TYPE.fullmatch(value):
        raise InvalidInputError(
            f"invalid content_type {value!r}: use 1-255 printable ASCII characters"
        )
    return value


def validate_artifact_metadata(value: object, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """None or a dict of exact JSON, at most 64 KiB serialized."""
    meta = validate_metadata(value, what="artifact metadata", max_depth=max_depth)
    if meta and len(dump_json(meta, max_depth=max_depth)) > 64 * 1024:
        raise InvalidInputError("artifact metadata must serialize to at most 64 KiB of JSON")
    return meta


class ArtifactRepository:
    """Save, load, describe, list and delete the artifacts of one workspace.

    Data is ``bytes``, ``str`` or a JSON value; ``load`` returns the same kind. Every
    payload is checksummed (verified on read) and compressed per the settings.
    """

    def __init__(self, scope: Scope):
        self._scope = scope
        self._t, self._w = scope.tenant_id, scope.workspace_id

    @property
    def _s(self) -> Session:
        # Built on first use: save and load on PostgreSQL run on scope.connection.
        return self._scope.session

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
        validate_artifact_name(name)
        depth = self._scope.settings.max_json_depth
        meta = validate_artifact_metadata(metadata, depth)
        kind, raw = _to_raw(data, depth)
        ctype = validate_content_type(content_type, kind)
        self._check_size(name, len(raw))
        s = self._scope.settings
        encoded = encode(raw, codec=s.compression, threshold=s.compression_threshold)
        del raw  # keep at most the caller's data and the stored payload alive
        now = utcnow()
        created = self._upsert(name, self._values(kind, ctype, meta, encoded, now), created_at=now)
        return ArtifactRecord.model_construct(
            name=name,
            kind=kind,
            content_type=ctype,
            size=encoded.raw_size,
            stored_size=encoded.stored_size,
            codec=encoded.codec,
            checksum=encoded.checksum,
            metadata=meta,
            created_at=created,
            updated_at=now,
        )

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

    def _upsert(self, name: str, values: dict[str, Any], *, created_at: datetime) -> datetime:
        """Insert or replace the row; its ``created_at`` (the first save's)."""
        params = dict(values, tenant_id=self._t, workspace_id=self._w, name=name)
        params["created_at"] = created_at
        if self._scope.is_postgres:  # one prepared statement on the driver (_PG_SAVE)
            if created_at.tzinfo is None or values["updated_at"].tzinfo is None:
                # as UTCDateTime refuses them on the SQLAlchemy path
                raise InvalidInputError(
                    "naive datetime given; persistence stores UTC-aware timestamps"
                )
            params["user_metadata"] = json_param(values["user_metadata"])
            created: datetime = utc(fetch(self._scope.connection, _PG_SAVE, params)[0][0])
            return created
        payload: bytes = values["payload"]
        # Bound as a parameter, SQLite keeps two extra copies of a large payload while it
        # builds the row; reserve the space and stream the bytes in instead.
        params["payload"] = func.zeroblob(len(payload))
        stmt = sqlite.insert(Artifact).values(params)
        # excluded.<column>: each value (the payload above all) is sent once, not twice.
        stmt = stmt.on_conflict_do_update(
            index_elements=[Artifact.tenant_id, Artifact.workspace_id, Artifact.name],
            set_={key: stmt.excluded[key] for key in values},
        )
        row: Any = self._s.execute(
            stmt.returning(Artifact.created_at, literal_column("rowid"))
        ).one()
        if payload:
            with self._driver().blobopen("artifacts", "payload", row[1]) as blob:
                view = memoryview(payload)
                for start in range(0, len(view), _CHUNK):
                    blob.write(view[start : start + _CHUNK])
        return cast(datetime, row[0])

    def _driver(self) -> Any:
        """The DB-API connection of this unit of work (same transaction)."""
        return self._s.connection().connection.driver_connection

    def _payload_row(self, name: str) -> Any:
        validate_artifact_name(name)
        if self._scope.is_postgres:
            return self._payload_row_binary(name)
        row: Any = self._s.execute(
            select(literal_column("rowid"), Artifact.kind, Artifact.codec, Artifact.checksum).where(
                self._mine(), Artifact.name == name
            )
        ).first()
        if row is None:
            raise NotFoundError(f"artifact {name!r} does not exist")
        # Streamed out of the row: one copy of the payload, not three.
        with self._driver().blobopen("artifacts", "payload", row[0], readonly=True) as blob:
            payload = blob.read()
        return _PayloadRow(row.kind, row.codec, row.checksum, payload)

    def _payload_row_binary(self, name: str) -> Any:
        # On the unit of work's own connection (same transaction, same tenant setting).
        # A small payload comes with the first, prepared read; a larger one in chunks.
        s = self._scope
        for _attempt in range(3):
            rows = fetch(s.connection, _PG_LOAD, (self._t, self._w, name))
            if not rows:
                raise NotFoundError(f"artifact {name!r} does not exist")
            kind, codec, digest, stored_size, payload = rows[0]
            del rows
            if stored_size > _PG_SMALL:
                payload = self._read_chunks(name, codec, digest, stored_size)
            if payload is not None:
                return _PayloadRow(kind, codec, digest, payload)
        raise ConflictError(f"artifact {name!r} kept changing while it was read")

    def _read_chunks(self, name: str, codec: str, digest: str, stored_size: int) -> bytes | None:
        """The payload in binary format (text format would carry bytea as hex, twice the
        size), in chunks so that libpq never buffers the whole of it; None when it was
        replaced meanwhile."""
        driver: Any = self._scope.connection.connection.driver_connection
        key = (self._t, self._w, name, digest, codec, stored_size)
        chunks: list[bytes] = []
        read = 0
        with driver.cursor(binary=True) as cursor:
            while read < stored_size:
                cursor.execute(_PG_CHUNK, (read + 1, _PG_CHUNK_BYTES, *key))
                row = cursor.fetchone()
                if row is None:  # replaced meanwhile: read the new one from the start
                    return None
                if not row[0]:
                    break
                chunks.append(row[0])
                read += len(row[0])
                del row
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
        row = self._s.execute(
            select(*_META_COLUMNS).where(self._mine(), Artifact.name == name)
        ).first()
        if row is None:
            raise NotFoundError(f"artifact {name!r} does not exist")
        return _record(row)

    def exists(self, name: str) -> bool:
        validate_artifact_name(name)
        stmt = select(Artifact.name).where(self._mine(), Artifact.name == name)
        return self._s.execute(stmt).first() is not None

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
        items = [_record(row) for row in self._s.execute(stmt)]
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1].name) if more else None)

    def delete(self, name: str) -> None:
        """Delete the artifact. Raises NotFoundError."""
        validate_artifact_name(name)
        result = self._s.execute(
            delete(Artifact).where(self._mine(), Artifact.name == name).returning(Artifact.name)
        )
        if result.first() is None:
            raise NotFoundError(f"artifact {name!r} does not exist")

    def import_artifact(self, record: ArtifactRecord, raw: bytes) -> bool:
        """Write an exported artifact with its exact metadata and times (for import).

        ``raw`` is what :meth:`load_raw` returned. Idempotent: identical content already
        stored is a no-op (False); different content raises ConflictError. Invalid
        input raises InvalidInputError before writing.
        """
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
