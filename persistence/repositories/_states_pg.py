"""The state repository's hot statements in PostgreSQL SQL, run on the driver.

``save`` is one statement: a data-modifying CTE takes the next version number on
the head row (locking it, or refusing when ``expected_version`` does not hold),
inserts the version and its tags, and returns the number and the parent. ``load``
is one primary-key lookup of the head joined to one version. They are the same
statements the SQLAlchemy path in :mod:`persistence.repositories._states_sql`
builds for both backends, written out so :mod:`persistence._driver` can run them
as prepared statements without SQLAlchemy's per-call execution cost.
"""

from __future__ import annotations

from typing import Any

from persistence._driver import json_value, utc
from persistence.records.states import StateVersion

__all__ = ["LOAD_LATEST", "LOAD_VERSION", "save_sql", "version_record"]

# The head's live latest version; 0 when the state was deleted or has expired.
_CURRENT = """CASE WHEN h.latest_version IS NOT NULL
          AND (h.expires_at IS NULL OR h.expires_at > %(now)s::timestamptz)
     THEN h.latest_version ELSE 0 END"""

_ADVANCE_SET = f"""last_version = h.last_version + 1,
        latest_version = h.last_version + 1,
        parent_version = NULLIF({_CURRENT}, 0),
        expires_at = %(expires)s::timestamptz,
        updated_at = %(now)s::timestamptz"""

_KEY = "h.tenant_id = %(t)s::uuid AND h.workspace_id = %(w)s::uuid AND h.state_id = %(s)s::text"

_UPSERT_HEAD = f"""INSERT INTO state_heads AS h
        (tenant_id, workspace_id, state_id, last_version, latest_version, parent_version,
         expires_at, updated_at)
    VALUES (%(t)s::uuid, %(w)s::uuid, %(s)s::text, 1, 1, NULL,
            %(expires)s::timestamptz, %(now)s::timestamptz)
    ON CONFLICT (tenant_id, workspace_id, state_id) DO UPDATE SET
        {_ADVANCE_SET}"""

_ADVANCE = {
    # insert at 1, or take the next number
    "any": _UPSERT_HEAD,
    # the same, but only while the state has no live version (expected_version=0)
    "absent": f"{_UPSERT_HEAD}\n    WHERE {_CURRENT} = 0",
    # only when the live latest version is the expected one (the row must exist)
    "expected": f"""UPDATE state_heads AS h SET
        {_ADVANCE_SET}
    WHERE {_KEY} AND {_CURRENT} = %(expected)s::bigint""",
}

_SAVE = """WITH head AS (
    {advance}
    RETURNING h.last_version, h.parent_version
), version AS (
    INSERT INTO state_versions
        (tenant_id, workspace_id, state_id, version, parent_version, created_at, expires_at,
         raw_size, stored_size, codec, checksum, tags, metadata, payload)
    SELECT %(t)s::uuid, %(w)s::uuid, %(s)s::text, head.last_version, head.parent_version,
           %(now)s::timestamptz, %(expires)s::timestamptz, %(raw_size)s::bigint,
           %(stored_size)s::bigint, %(codec)s::text, %(checksum)s::text, %(tags)s::json,
           %(metadata)s::json, %(payload)s::bytea
    FROM head
), tag AS (
    INSERT INTO state_tags (tenant_id, workspace_id, tag, state_id, version)
    SELECT %(t)s::uuid, %(w)s::uuid, tag, %(s)s::text, head.last_version
    FROM head, unnest(%(tag_list)s::text[]) AS tag
)
SELECT last_version, parent_version FROM head"""

_SAVE_SQL = {mode: _SAVE.format(advance=advance) for mode, advance in _ADVANCE.items()}


def save_sql(mode: str) -> str:
    """The save statement for ``mode`` "any", "absent" or "expected"; it returns one row
    ``(version, parent_version)``, or none when ``expected_version`` does not hold."""
    return _SAVE_SQL[mode]


# json columns are read as text and parsed with orjson (faster than the driver's loader).
_SELECT_VERSION = """SELECT v.state_id, v.version, v.parent_version, v.created_at, v.expires_at,
       v.raw_size, v.stored_size, v.codec, v.checksum, v.tags::text, v.metadata::text, v.payload
FROM state_heads h JOIN state_versions v
  ON v.tenant_id = h.tenant_id AND v.workspace_id = h.workspace_id AND v.state_id = h.state_id"""

_HEAD_ALIVE = "(h.expires_at IS NULL OR h.expires_at > %(now)s::timestamptz)"

LOAD_LATEST = f"""{_SELECT_VERSION} AND v.version = h.latest_version
WHERE {_KEY} AND {_HEAD_ALIVE}"""

LOAD_VERSION = f"""{_SELECT_VERSION} AND v.version = %(version)s::bigint
WHERE {_KEY} AND {_HEAD_ALIVE}
  AND (v.expires_at IS NULL OR v.expires_at > %(now)s::timestamptz)"""


def version_record(row: tuple[Any, ...]) -> StateVersion:
    """Metadata of a row of LOAD_LATEST / LOAD_VERSION (the payload is ``row[11]``)."""
    return StateVersion.model_construct(
        state_id=row[0],
        version=row[1],
        parent_version=row[2],
        created_at=utc(row[3]),
        expires_at=utc(row[4]),
        raw_size=row[5],
        stored_size=row[6],
        codec=row[7],
        checksum=row[8],
        tags=tuple(json_value(row[9])),
        metadata=json_value(row[10]),
    )
