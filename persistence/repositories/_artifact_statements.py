"""The artifact repository's statements, defined once in SQLAlchemy Core.

The two real differences between the backends are how a payload travels:

* SQLite keeps two extra copies of a large payload bound as a parameter while it builds
  the row: the save reserves the space (zeroblob, :data:`SAVE_RESERVING`) and streams the
  bytes in through the row's blob handle, and the load streams them out the same way (by
  rowid, :data:`LOAD_BLOB`).
* PostgreSQL's text format carries bytea as hex (twice the size): the first, prepared
  read (:data:`LOAD`) brings the payload only when it is small; a larger one is read in
  binary format, in chunks (:data:`CHUNK`), so that libpq never buffers the whole of it.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, func, literal_column, select

from persistence._compiled import Statement
from persistence.models.artifacts import Artifact
from persistence.repositories._sql import ClockMicros, next_version, upsert

__all__ = [
    "CHUNK",
    "LOAD",
    "LOAD_BLOB",
    "META_COLUMNS",
    "PG_CHUNK_BYTES",
    "PG_SMALL",
    "SAVE",
    "SAVE_RESERVING",
]

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
    values: dict[str, Any] = {c.key: bindparam(c.key, type_=c.type) for c in _ART.c}
    values["payload"] = payload
    values["version"] = ClockMicros()  # (the read cache orders by it: migration 0007)
    stmt = upsert(_ART).values(values)
    written = {key: stmt.excluded[key] for key in _WRITTEN}
    stmt = stmt.on_conflict_do_update(
        index_elements=[_ART.c.tenant_id, _ART.c.workspace_id, _ART.c.name],
        set_={**written, "version": next_version(_ART, stmt)},
    )
    returned = (_ART.c.created_at, _ART.c.version, *returning)
    return Statement(stmt.returning(*returned), "artifacts_save")


SAVE = _save(bindparam("payload", type_=_ART.c.payload.type))
SAVE_RESERVING = _save(func.zeroblob(bindparam("payload_size")), literal_column("rowid"))
PG_SMALL = 64 * 1024  # bytes: a larger payload is read in chunks
LOAD = Statement(
    select(
        _ART.c.kind,
        _ART.c.codec,
        _ART.c.checksum,
        _ART.c.stored_size,
        _ART.c.version,
        case((_ART.c.stored_size <= literal_column(str(PG_SMALL)), _ART.c.payload)).label(
            "payload"
        ),
    ).where(_KEY),
    "artifacts_load",
    binary=True,
)
LOAD_BLOB = Statement(
    select(
        literal_column("rowid").label("rowid"),
        _ART.c.kind,
        _ART.c.codec,
        _ART.c.checksum,
        _ART.c.version,
    ).where(_KEY),
    "artifacts_load_blob",
)
# Chunks of one stored payload only: a concurrent replace shows as no row.
CHUNK = Statement(
    select(func.substring(_ART.c.payload, bindparam("start"), bindparam("count"))).where(
        _KEY,
        _ART.c.checksum == bindparam("checksum"),
        _ART.c.codec == bindparam("codec"),
        _ART.c.stored_size == bindparam("stored_size"),
    ),
    "artifacts_chunk",
)
PG_CHUNK_BYTES = 8 * 1024 * 1024

META_COLUMNS = (
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
