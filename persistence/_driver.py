"""Hot statements run on the unit of work's own psycopg connection (PostgreSQL).

SQLAlchemy's execution path (statement cache lookup, parameter processing, result
metadata, row processing) costs several times the driver's own work for the short
statements that dominate an agent platform's traffic: load the latest state, save a
version, get or set a key. Those statements are written in SQL here and executed on
the driver connection the session's transaction already holds, as server-side
prepared statements. They share the transaction, the tenant setting and row-level
security with everything else in the unit of work; errors are re-raised as
SQLAlchemy's so :func:`persistence.errors.translate_errors` maps them as usual, and
the engine's ``before_cursor_execute`` / ``after_cursor_execute`` listeners, when
there are any, see them like any other statement (the context argument is a plain
object, not an ``ExecutionContext``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar, overload

import orjson
import psycopg
from psycopg.pq import ExecStatus
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

CursorT = TypeVar("CursorT", bound=psycopg.Cursor[Any])
TUPLES_OK = ExecStatus.TUPLES_OK
_CURSOR = "persistence_driver_cursor"

__all__ = [
    "fetch",
    "json_param",
    "json_value",
    "pooled_cursor",
    "raise_driver_error",
    "utc",
]


def fetch(
    bind: Connection | Session, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Execute ``sql`` (``%s`` or ``%(name)s`` placeholders) prepared; its rows.

    The sessions of a unit of work do not autoflush, so nothing is flushed here either.
    """
    connection = bind.connection() if isinstance(bind, Session) else bind
    pooled = connection.connection
    dispatch = connection.dispatch
    observed = bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)
    try:
        cursor: psycopg.Cursor[Any] = pooled_cursor(connection, _CURSOR, psycopg.Cursor)
        if observed:  # statement listeners (tracing, statement counts) see these too
            context = _Context()
            dispatch.before_cursor_execute(connection, cursor, sql, params, context, False)
        cursor.execute(sql, params, prepare=True)
        if observed:
            dispatch.after_cursor_execute(connection, cursor, sql, params, context, False)
        result = cursor.pgresult  # (cursor.description would build column objects)
        rows = cursor.fetchall() if result and result.status == TUPLES_OK else []
        _release(pooled.info, cursor)
        return rows
    except psycopg.Error as exc:
        raise_driver_error(connection, sql, params, exc)


def pooled_cursor(connection: Connection, key: str, factory: Callable[[Any], CursorT]) -> CursorT:
    """The cursor ``factory(driver connection)`` kept under ``key`` for the pooled
    connection, made on first use: creating a cursor costs more than executing a short
    prepared statement. The pool entry's ``info`` lives as long as the driver connection,
    so a replaced connection starts with new cursors."""
    info = connection.connection.info
    cursor: CursorT | None = info.get(key)
    if cursor is None or cursor.closed:
        cursor = info[key] = factory(connection.connection.driver_connection)
    return cursor


def raise_driver_error(
    connection: Connection, statement: str, params: Any, exc: psycopg.Error
) -> NoReturn:
    """Re-raise a psycopg error of ``connection`` as SQLAlchemy's (so
    ``translate_errors`` maps it), invalidating the connection if the error broke it."""
    driver: Any = connection.connection.driver_connection
    if driver.broken or driver.closed:
        connection.invalidate(exc)
    raise sa_exc.DBAPIError.instance(statement, params, exc, psycopg.Error) from exc


def _release(info: dict[Any, Any], cursor: psycopg.Cursor[Any]) -> None:
    """Drop the cursor's result (libpq's copy of the rows, a large payload's included)
    so a pooled connection does not hold it until its next statement."""
    reset = getattr(cursor, "_reset", None)  # psycopg 3.1-3.3; else a cursor per call
    if reset is not None:
        reset()
    else:
        info.pop(_CURSOR, None)
        cursor.close()


class _Context:
    """Stands in for SQLAlchemy's execution context in statement events: listeners
    (OpenTelemetry's, for one) keep per-statement attributes on it."""


def json_param(value: Any) -> str:
    """A value for a ``json`` column: its text, serialized with orjson (the statement
    casts the parameter, ``%(name)s::json``)."""
    return orjson.dumps(value).decode()


def json_value(value: Any) -> Any:
    """A ``json`` column's value as returned by the driver (parsed or still text)."""
    if isinstance(value, (str, bytes)):
        return orjson.loads(value)
    return value


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """A ``timestamptz`` in UTC, like :class:`persistence.models.base.UTCDateTime`."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
