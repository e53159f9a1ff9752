"""The one executor: a :class:`~persistence._compiled.Statement` (SQLAlchemy Core,
compiled once per dialect) run on the unit of work's own driver connection, every driver
error translated here. The sync module ``_executor.py`` is generated from this one
(``python persistence/_unasync.py``).

Running a compiled statement costs the driver's own call plus a few dictionary look-ups,
where SQLAlchemy's execution path (statement cache key, parameter processing, result
metadata, row objects) costs several times that for the short statements that dominate
an agent platform's traffic.

* PostgreSQL: psycopg (``AsyncConnection`` / ``Connection``), as a server-side prepared
  statement (``prepare=True``; nothing is prepared when the ``prepared_statements``
  setting sets ``prepare_threshold=None``), on a cursor kept per pooled connection.
* SQLite: the unit of work's ``aiosqlite`` / ``sqlite3`` connection, with positional
  parameters.

A statement with an expanding parameter (``IN`` of a list) cannot be a ``Statement``
(its SQL depends on the list's length): it is built per call and run by
:func:`execute`. The engine's ``before_cursor_execute`` / ``after_cursor_execute``
listeners, when there are any, see every statement :func:`run` sends (the context
argument is a plain object, not an ``ExecutionContext``; a ``retval=True`` listener
cannot rewrite the statement, and ``after_cursor_execute`` is not called for a statement
that failed). ``BEGIN`` with the tenant entry and ``COMMIT`` (:func:`simple_query`)
bypass them. With no listener they cost one attribute check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import psycopg
import psycopg.errors
from psycopg import generators
from psycopg.pq import ExecStatus
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection  # sync:

from persistence._compiled import Row, Statement, arguments, rows
from persistence.errors import DatabaseUnavailableError, PersistenceError, translate

__all__ = [
    "Row",
    "Statement",
    "driver_of",
    "execute",
    "pooled_cursor",
    "raise_translated",
    "run",
    "run_entering",
    "run_one",
    "run_scalar",
    "simple_query",
    "sync_of",
]

CursorT = TypeVar("CursorT")
_TUPLES_OK = ExecStatus.TUPLES_OK
_FATAL_ERROR = ExecStatus.FATAL_ERROR
_CURSOR = "persistence_executor_cursor"
_ENTRY_CURSOR = "persistence_entry_cursor"
_LOST = "the unit of work lost its database connection: nothing more can run in it"


def sync_of(connection: AsyncConnection) -> Connection:
    """The SQLAlchemy ``Connection`` under ``connection`` (itself, on the sync API)."""
    sync = connection.sync_connection  # sync: return connection
    if sync is None:  # sync:
        raise DatabaseUnavailableError(_LOST)  # sync:
    return sync  # sync:


def driver_of(connection: AsyncConnection) -> Any:
    """The driver's connection (psycopg's, or SQLite's) under ``connection``."""
    return sync_of(connection).connection.driver_connection


async def run(
    connection: AsyncConnection, statement: Statement, params: Mapping[str, Any]
) -> list[Row]:
    """Run ``statement`` with ``params`` on ``connection`` (the unit of work's); its rows.

    Raises the :class:`~persistence.errors.PersistenceError` a driver error maps to.
    """
    sync = sync_of(connection)
    compiled, args = arguments(statement, sync.dialect, params)
    raw = await _execute(connection, sync, compiled.sql, args, compiled.binary)
    return rows(compiled, raw)


async def run_one(
    connection: AsyncConnection, statement: Statement, params: Mapping[str, Any]
) -> Row:
    """The first row of :func:`run`, or ``None``."""
    found = await run(connection, statement, params)
    return found[0] if found else None


async def run_scalar(
    connection: AsyncConnection, statement: Statement, params: Mapping[str, Any]
) -> Any:
    """The first column of the first row of :func:`run`, or ``None``."""
    found = await run(connection, statement, params)
    return found[0][0] if found else None


async def _execute(
    connection: AsyncConnection, sync: Connection, sql: str, args: Any, binary: bool
) -> Any:
    if sync.invalidated:  # never a statement on a silently reconnected connection
        raise DatabaseUnavailableError(_LOST)
    observed = _observed(sync)
    pooled = sync.connection
    driver: Any = pooled.driver_connection
    is_pg = isinstance(driver, psycopg.AsyncConnection)
    try:
        # (SQLite: the connection stands for the cursor; its execute makes one per call)
        cursor = _cursor(pooled, driver) if is_pg else driver
        if observed:  # statement listeners (tracing, statement counts) see these too
            context = _Context()
            sync.dispatch.before_cursor_execute(sync, cursor, sql, args, context, False)
        if is_pg:
            await cursor.execute(sql, args, prepare=True, binary=binary)
            raw = await _fetched(pooled, cursor)
        else:  # (one call: on asyncio, one hop to aiosqlite's thread and back)
            raw = await driver.execute_fetchall(sql, args)  # sync: raw = _fetch(driver, sql, args)
        if observed:
            sync.dispatch.after_cursor_execute(sync, cursor, sql, args, context, False)
        return raw
    except (psycopg.Error, sqlite3.Error) as exc:
        await raise_translated(connection, sql, args, exc)


def _observed(sync: Connection) -> bool:
    """Whether statement listeners are registered (the flags SQLAlchemy's own execution
    checks before it looks at any listener)."""
    if not (sync._has_events or sync.engine._has_events):
        return False
    dispatch = sync.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


async def _fetched(pooled: Any, cursor: psycopg.AsyncCursor[Any]) -> list[Any]:
    """The rows of the statement ``cursor`` ran, then its result dropped (libpq's copy
    of the rows, a large payload's included) so a pooled connection does not hold it
    until its next statement."""
    result = cursor.pgresult  # (cursor.description would build column objects)
    raw = await cursor.fetchall() if result and result.status == _TUPLES_OK else []
    reset = getattr(cursor, "_reset", None)  # psycopg 3.1-3.3; else a cursor per call
    if reset is not None:
        reset()
    else:
        pooled.info.pop(_CURSOR, None)
        await cursor.close()
    return raw


async def run_entering(
    connection: AsyncConnection,
    begin: str,
    entry: tuple[str, Any],
    statement: Statement,
    params: Mapping[str, Any],
) -> tuple[Any, list[Row] | PersistenceError]:
    """``begin`` (``BEGIN ...``), the tenant entry (``entry``: its SQL and arguments) and
    ``statement`` in one round trip, as one libpq pipeline (PostgreSQL only).

    Returns the entry's result (its row as text, for ``persistence._enter.EntryRow``)
    and the statement's rows, or the error the statement raised, translated, for the
    caller to raise once it has read the entry: a statement sent for a tenant that was
    suspended since fails on row-level security, and the entry says why. Raises the
    translated error when the entry did not run (a dead connection).

    The driver connection is switched to autocommit (psycopg would send a ``BEGIN`` of
    its own and wait for it); the transaction is ``begin``'s, explicit, so nothing
    commits before the unit of work's ``COMMIT``. The pool's checkin switches it back.
    """
    sync = sync_of(connection)
    if sync.invalidated:
        raise DatabaseUnavailableError(_LOST)
    pooled = sync.connection
    driver: Any = pooled.driver_connection
    compiled, args = arguments(statement, sync.dialect, params)
    head, cursor = _cursor(pooled, driver, _ENTRY_CURSOR), _cursor(pooled, driver)
    observed, before, failed = _observed(sync), head.pgresult, None
    try:
        if not driver.autocommit:
            await driver.set_autocommit(True)
        if observed:
            context = _Context()
            sync.dispatch.before_cursor_execute(sync, cursor, compiled.sql, args, context, False)
        async with driver.pipeline():
            await head.execute(begin)
            await head.execute(entry[0], entry[1], prepare=True)
            await cursor.execute(compiled.sql, args, prepare=True, binary=compiled.binary)
    except psycopg.Error as exc:
        failed = exc
    entered = head.pgresult
    if entered is None or entered is before or entered.status != _TUPLES_OK:
        await raise_translated(connection, entry[0], entry[1], failed or _no_entry())
    if failed is not None:
        try:
            await raise_translated(connection, compiled.sql, args, failed)
        except PersistenceError as translated:
            return entered, translated
    raw = await _fetched(pooled, cursor)
    if observed:
        sync.dispatch.after_cursor_execute(sync, cursor, compiled.sql, args, context, False)
    return entered, rows(compiled, raw)


def _no_entry() -> psycopg.Error:
    return psycopg.InterfaceError("the tenant entry returned no result")


def _fetch(driver: Any, sql: str, args: Any) -> Any:
    """SQLite's rows for ``sql`` (the sync twin of aiosqlite's ``execute_fetchall``)."""
    return driver.execute(sql, args).fetchall()


def _cursor(
    pooled: Any, driver: psycopg.AsyncConnection[Any], key: str = _CURSOR
) -> psycopg.AsyncCursor[Any]:
    """The cursor kept for the pooled connection under ``key`` (see :func:`pooled_cursor`)."""
    info = pooled.info
    cursor: psycopg.AsyncCursor[Any] | None = info.get(key)
    if cursor is None or cursor.closed:
        cursor = info[key] = psycopg.AsyncCursor(driver)
    return cursor


def pooled_cursor(
    connection: AsyncConnection, key: str, factory: Callable[[Any], CursorT]
) -> CursorT:
    """The cursor ``factory(driver connection)`` kept under ``key`` for the pooled
    connection, made on first use: creating a cursor costs more than executing a short
    prepared statement. The pool entry's ``info`` lives as long as the driver connection,
    so a replaced connection starts with new cursors."""
    pooled = sync_of(connection).connection
    info = pooled.info
    cursor: Any = info.get(key)
    if cursor is None or cursor.closed:
        cursor = info[key] = factory(pooled.driver_connection)
    return cursor  # type: ignore[no-any-return]


async def simple_query(driver: psycopg.AsyncConnection[Any], query: bytes) -> list[Any]:
    """Send ``query`` (statements without parameters: ``BEGIN; SELECT ...``, ``COMMIT``)
    in the simple protocol straight through libpq; the results, one per statement.

    The tenant entry and the commit of every unit of work go this way: a cursor (or
    ``Connection.execute``/``commit()``) builds a result machinery per call that costs
    several times libpq's own work for a statement this short. An error result is
    raised as the psycopg error it carries; a broken connection raises psycopg's
    ``OperationalError`` from libpq.
    """
    pgconn = driver.pgconn
    pgconn.send_query(query)
    results: list[Any] = await driver.wait(generators.execute(pgconn))
    for result in results:
        if result.status == _FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
    return results


async def raise_translated(
    connection: AsyncConnection, statement: str, params: Any, exc: Exception
) -> NoReturn:
    """Raise the library's error for a driver error of ``connection``, invalidating the
    connection first if the error broke it (so the pool does not hand it out again)."""
    driver = driver_of(connection)
    if isinstance(driver, psycopg.AsyncConnection) and (driver.broken or driver.closed):
        await connection.invalidate(exc)
    dbapi = psycopg.Error if isinstance(exc, psycopg.Error) else sqlite3.Error
    wrapped: Any = sa_exc.DBAPIError.instance(statement, params, exc, dbapi)
    raise translate(wrapped) from wrapped


class _Context:
    """Stands in for SQLAlchemy's execution context in statement events: listeners
    (OpenTelemetry's, for one) keep per-statement attributes on it."""


async def execute(
    connection: AsyncConnection, clause: Any, params: Mapping[str, Any] | None = None
) -> list[Row]:
    """Run a statement built per call (a page query with optional filters, a batch) through
    SQLAlchemy's own execution and its compiled cache; its rows, errors translated.

    The hot paths use :func:`run` with a :class:`Statement` defined once instead.
    """
    if connection.invalidated:
        raise DatabaseUnavailableError(_LOST)
    try:
        result = await connection.execute(clause, dict(params) if params else None)
        return list(result.all()) if result.returns_rows else []
    except sa_exc.DBAPIError as exc:
        raise translate(exc) from exc
