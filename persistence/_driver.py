"""Hot statements run on the unit of work's own psycopg connection (PostgreSQL).

SQLAlchemy's execution path (statement cache lookup, parameter processing, result
metadata, row processing) costs several times the driver's own work for the short
statements that dominate an agent platform's traffic: load the latest state, save a
version, get or set a key. Those statements are written in SQL here and executed on
the driver connection the session's transaction already holds, as server-side
prepared statements. They share the transaction, the tenant setting and row-level
security with everything else in the unit of work; errors are re-raised as
SQLAlchemy's so :func:`persistence.errors.translate_errors` maps them as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Json
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

__all__ = ["fetch", "json_param", "json_value", "utc"]


def fetch(session: Session, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Execute ``sql`` (positional ``%s`` / ``%b`` placeholders) prepared; its rows.

    The sessions of a unit of work do not autoflush, so nothing is flushed here either.
    """
    connection = session.connection()
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    try:
        cursor = driver.execute(sql, params, prepare=True)
        return cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as exc:
        if driver.broken or driver.closed:
            connection.invalidate(exc)
        raise sa_exc.DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_param(value: Any) -> Json:
    """A value for a ``json`` column (serialized with orjson)."""
    return Json(value, dumps=_dumps)


def json_value(value: Any) -> Any:
    """A ``json`` column's value as returned by the driver (parsed or still text)."""
    if isinstance(value, (str, bytes)):
        return orjson.loads(value)
    return value


def utc(value: datetime | None) -> datetime | None:
    """A ``timestamptz`` in UTC, like :class:`persistence.models.base.UTCDateTime`."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
