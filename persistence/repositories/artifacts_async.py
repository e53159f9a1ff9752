"""Artifacts of one workspace: named bytes, text or JSON values with metadata."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar, cast

import psycopg
from sqlalchemy import and_, delete, func, select

from persistence._cursor import cursor_key, encode_cursor
from persistence._executor_async import driver_of, execute, raise_translated, run
from persistence.cache import Entry
from persistence.codecs import (
    Encoded,
    checksum,
    decode,
    encode,
    validate_codec,
)
from persistence.errors import (
    ConflictError,
    DataCorruptionError,
    InvalidInputError,
    NotFoundError,
)
from persistence.models.artifacts import Artifact
from persistence.models.base import utcnow
from persistence.records import ArtifactRecord, Page
from persistence.repositories import _cached as cached
from persistence.repositories._artifact_statements import (
    CHUNK,
    LOAD,
    LOAD_BLOB,
    META_COLUMNS,
    PG_CHUNK_BYTES,
    PG_SMALL,
    SAVE,
    SAVE_RESERVING,
)
from persistence.repositories._artifact_values import (
    DEFAULT_CONTENT_TYPES,
    decode_artifact,
    to_raw,
    validate_artifact_metadata,
    validate_content_type,
)
from persistence.repositories._base_async import AsyncScope
from persistence.validation import count, validate_artifact_name, validate_text

__all__ = [
    "DEFAULT_CONTENT_TYPES",
    "AsyncArtifactRepository",
    "decode_artifact",
    "validate_artifact_metadata",
    "validate_content_type",
]

_CHUNK_WRITE = 1024 * 1024  # bytes per write into a SQLite blob
T = TypeVar("T")


class _PayloadRow(NamedTuple):
    kind: str
    codec: str
    checksum: str
    payload: bytes
    version: int
    cached: bool = False  # (from the read cache: a checksum failure drops the entry)


def _record(row: Any) -> ArtifactRecord:
    return ArtifactRecord.from_row(row, metadata=row.user_metadata)


def _write_blob(driver: sqlite3.Connection, rowid: int, payload: bytes) -> None:
    """Stream ``payload`` into the space reserved for it in row ``rowid``."""
    with driver.blobopen("artifacts", "payload", rowid) as blob:
        view = memoryview(payload)
        for start in range(0, len(view), _CHUNK_WRITE):
            blob.write(view[start : start + _CHUNK_WRITE])


def _read_blob(driver: sqlite3.Connection, rowid: int) -> bytes:
    """The payload of row ``rowid``, streamed out of it: one copy, not three."""
    with driver.blobopen("artifacts", "payload", rowid, readonly=True) as blob:
        return blob.read()


class AsyncArtifactRepository:
    """Save, load, describe, list and delete the artifacts of one workspace.

    Data is ``bytes``, ``str`` or a JSON value; ``load`` returns the same kind. Every
    payload is checksummed (verified on read) and compressed per the settings.
    """

    def __init__(self, scope: AsyncScope):
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

    async def save(
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
        created, version = await self._upsert(name, values, created_at=now)
        small = encoded.stored_size <= s.cache_max_artifact_bytes
        entry = Entry(version, encoded.payload, (kind, encoded.codec, encoded.checksum))
        self._scope.cache_written(
            cached.ARTIFACT, self._cache_key(name), entry if small else None, version
        )
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

    def _cache_key(self, name: str) -> str:
        return cached.artifact_key(self._w, name)

    async def _upsert(
        self, name: str, values: dict[str, Any], *, created_at: datetime
    ) -> tuple[datetime, int]:
        """Insert or replace the row; its ``created_at`` (the first save's) and version."""
        params = dict(values, **self._key(name), created_at=created_at)
        params["now_us"] = time.time_ns() // 1000  # (SQLite's version clock)
        if self._scope.is_postgres:
            saved = await self._scope.run(SAVE, params)
            return cast(datetime, saved[0].created_at), int(saved[0].version)
        payload: bytes = params.pop("payload")
        reserve = dict(params, payload_size=len(payload))
        if not payload:
            saved = await self._scope.run(SAVE_RESERVING, reserve)
            return cast(datetime, saved[0].created_at), int(saved[0].version)
        connection = await self._scope.connected()
        # The row (its checksum) and the bytes streamed into it stand or fall together: a
        # stream that fails halfway must not leave a zero-filled payload to be committed.
        async with connection.begin_nested():
            saved = await run(connection, SAVE_RESERVING, reserve)
            row = saved[0]
            await self._on_sqlite(lambda driver: _write_blob(driver, row.rowid, payload))
        return cast(datetime, row.created_at), int(row.version)

    def _driver(self) -> Any:
        """The DB-API connection of this unit of work (same transaction)."""
        return driver_of(self._scope.connection)

    async def _on_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on this unit of work's sqlite3 connection (its blob API).

        On asyncio (aiosqlite has no blob API) the work runs on aiosqlite's worker
        thread, the one that owns the connection, queued as each of aiosqlite's own
        calls is: after every statement sent before it, before any sent after it.
        """
        driver = self._driver()
        done: T = await driver._execute(work, driver._conn)  # sync: done: T = work(driver)
        return done

    async def _payload_row(self, name: str) -> _PayloadRow:
        """The stored payload and what decodes it: through the read cache when it applies
        (a payload up to ``cache_max_artifact_bytes`` is filled after a miss)."""
        validate_artifact_name(name)
        key = self._cache_key(name)
        cache = self._scope.cache_for(key)
        if cache is None:
            return await self._stored_row(name)
        entry, ticket = await cache.get(self._t, cached.ARTIFACT, key)
        if entry is not None:
            kind, codec, digest = entry.meta
            return _PayloadRow(kind, codec, digest, entry.value, entry.version, cached=True)
        row = await self._stored_row(name)
        if len(row.payload) <= self._scope.settings.cache_max_artifact_bytes:
            meta = (row.kind, row.codec, row.checksum)
            await cache.fill(
                self._t, cached.ARTIFACT, key, Entry(row.version, row.payload, meta), ticket
            )
        return row

    async def _decoded(self, name: str) -> tuple[str, bytes]:
        """The kind and the verified raw bytes of the artifact; an entry of the read
        cache that fails its checksum is dropped and the row read again."""
        what = f"artifact {name!r}"
        row = await self._payload_row(name)
        try:
            raw = decode(row.payload, codec=row.codec, expected_checksum=row.checksum, what=what)
        except DataCorruptionError:
            if not row.cached:
                raise
            cache = self._scope.cache
            if cache is not None:
                await cache.discard(self._t, self._cache_key(name))
            row = await self._stored_row(name)
            raw = decode(row.payload, codec=row.codec, expected_checksum=row.checksum, what=what)
        return row.kind, raw

    async def _stored_row(self, name: str) -> _PayloadRow:
        if self._scope.is_postgres:
            return await self._payload_row_binary(name)
        row = await self._scope.run_one(LOAD_BLOB, self._key(name))
        if row is None:
            raise NotFoundError(f"artifact {name!r} does not exist")
        payload = await self._on_sqlite(lambda driver: _read_blob(driver, row.rowid))
        return _PayloadRow(row.kind, row.codec, row.checksum, payload, row.version)

    async def _payload_row_binary(self, name: str) -> _PayloadRow:
        # A small payload comes with the first, prepared read; a larger one in chunks.
        for _attempt in range(3):
            row = await self._scope.run_one(LOAD, self._key(name))
            if row is None:
                raise NotFoundError(f"artifact {name!r} does not exist")
            kind, codec, digest, stored_size, version, payload = row
            del row
            if stored_size > PG_SMALL:
                payload = await self._read_chunks(name, codec, digest, stored_size)
            if payload is not None:
                return _PayloadRow(kind, codec, digest, payload, version)
        raise ConflictError(f"artifact {name!r} kept changing while it was read")

    async def _read_chunks(
        self, name: str, codec: str, digest: str, stored_size: int
    ) -> bytes | None:
        """The payload in binary format, in chunks (see ``CHUNK``); None when it was
        replaced meanwhile."""
        connection = await self._scope.connected()
        sql = CHUNK.sql(connection.dialect)
        key = dict(self._key(name), checksum=digest, codec=codec, stored_size=stored_size)
        driver: psycopg.AsyncConnection[Any] = self._driver()
        chunks: list[bytes] = []
        read = 0
        try:
            async with driver.cursor(binary=True) as cursor:
                while read < stored_size:
                    await cursor.execute(sql, dict(key, start=read + 1, count=PG_CHUNK_BYTES))
                    chunk = await cursor.fetchone()
                    if chunk is None:  # replaced meanwhile: read the new one from the start
                        return None
                    if not chunk[0]:
                        break
                    chunks.append(chunk[0])
                    read += len(chunk[0])
                    del chunk
        except psycopg.Error as exc:
            await raise_translated(connection, sql, key, exc)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def load_raw(self, name: str) -> bytes:
        """The artifact's data as bytes (UTF-8 for ``str``, JSON text for ``json``),
        checksum-verified. Raises NotFoundError, DataCorruptionError."""
        return (await self._decoded(name))[1]

    async def load(self, name: str) -> bytes | str | Any:
        """The data as saved: bytes, str or the JSON value.

        Raises NotFoundError, DataCorruptionError (checksum mismatch, undecodable data).
        """
        kind, raw = await self._decoded(name)
        return decode_artifact(kind, raw, what=f"artifact {name!r}")

    async def get(self, name: str) -> ArtifactRecord:
        """Metadata only (no data). Raises NotFoundError."""
        validate_artifact_name(name)
        rows = await execute(
            await self._scope.connected(),
            select(*META_COLUMNS).where(self._mine(), Artifact.name == name),
        )
        row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f"artifact {name!r} does not exist")
        return _record(row)

    async def exists(self, name: str) -> bool:
        validate_artifact_name(name)
        stmt = select(Artifact.name).where(self._mine(), Artifact.name == name)
        return bool(await self._scope.execute(stmt))

    async def list(
        self, prefix: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[ArtifactRecord]:
        """Metadata of the artifacts whose name starts with ``prefix``, by name, paginated."""
        limit = count(limit, "limit", minimum=1)
        stmt = select(*META_COLUMNS).where(self._mine()).order_by(Artifact.name).limit(limit + 1)
        if prefix is not None:
            prefix = validate_text(prefix, "prefix", max_length=512, min_length=0)
            # substr, not LIKE: SQLite's LIKE ignores case and both need escaping.
            stmt = stmt.where(func.substr(Artifact.name, 1, len(prefix)) == prefix)
        if cursor is not None:
            stmt = stmt.where(Artifact.name > cursor_key(cursor))
        items = [_record(row) for row in await self._scope.execute(stmt)]
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1].name) if more else None)

    async def delete(self, name: str) -> None:
        """Delete the artifact. Raises NotFoundError."""
        self._scope.require_writable("delete")
        validate_artifact_name(name)
        deleted = await execute(
            await self._scope.connected(),
            delete(Artifact)
            .where(self._mine(), Artifact.name == name)
            .returning(Artifact.name, Artifact.version),
        )
        if not deleted:
            raise NotFoundError(f"artifact {name!r} does not exist")
        floor = int(deleted[0].version) + 1
        self._scope.cache_written(cached.ARTIFACT, self._cache_key(name), None, floor)

    async def import_artifact(self, record: ArtifactRecord, raw: bytes) -> bool:
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
            current = await self.get(name)
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
        _, version = await self._upsert(name, values, created_at=record.created_at)
        self._scope.cache_written(cached.ARTIFACT, self._cache_key(name), None, version)
        return True
