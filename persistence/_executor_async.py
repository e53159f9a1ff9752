"""The one executor: a :class:`~persistence._compiled.Statement` (SQLAlchemy Core,
compiled once per dialect) run on the unit of work's own driver connection, every driver
error translated here. The sync module ``_executor.py`` is generated from this one
(``python persistence/_unasync.py``).

Running a compiled statement costs the driver's own call plus a few dictionary look-ups,
where SQLAlchemy's execution path (statement cache key, parameter processing, result
metadata, row objects) costs several times that for the short statements that dominate
an agent platform's traffic.

* PostgreSQL: psycopg's ``AsyncConnection`` / ``Connection``, straight through libpq
  (:mod:`persistence._wire`: psycopg's adapters, no cursor) as a server-side prepared
  statement of our own per connection (none with ``prepared_statements=False``).
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
from persistence._wire import Batch, exchange
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
_LOST = "the unit of work lost its database connection: nothing more can run in it"
_COMMIT = b"COMMIT"
_IN_DOUBT = (
    "the database connection was lost while the unit of work committed with its last "
    "statement: whether it committed is unknown (read before writing it again)"
)


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
    connection: AsyncConnection,
    statement: Statement,
    params: Mapping[str, Any],
    *,
    commit: bool = False,
) -> list[Row]:
    """Run ``statement`` with ``params`` on ``connection`` (the unit of work's); its rows.
    ``commit`` (PostgreSQL): ``COMMIT`` in the same round trip, after the statement (not
    sent if the statement fails).

    Raises the :class:`~persistence.errors.PersistenceError` a driver error maps to.
    """
    sync = sync_of(connection)
    compiled, args = arguments(statement, sync.dialect, params)
    raw = await _execute(connection, sync, compiled, args, commit)
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
    connection: AsyncConnection, sync: Connection, compiled: Any, args: Any, commit: bool = False
) -> Any:
    if sync.invalidated:  # never a statement on a silently reconnected connection
        raise DatabaseUnavailableError(_LOST)
    observed, sql = _observed(sync), compiled.sql
    pooled = sync.connection
    driver: Any = pooled.driver_connection
    is_pg = isinstance(driver, psycopg.AsyncConnection)
    try:
        if observed:  # statement listeners (tracing, statement counts) see these too
            # (SQLite: the connection stands for the cursor; its execute makes one per call)
            cursor, context = (_cursor(pooled, driver) if is_pg else driver), _Context()
            sync.dispatch.before_cursor_execute(sync, cursor, sql, args, context, False)
        if is_pg:
            raw = await _alone(connection, pooled, driver, compiled, args, commit)
        else:  # (one call: on asyncio, one hop to aiosqlite's thread and back)
            raw = await driver.execute_fetchall(sql, args)  # sync: raw = _fetch(driver, sql, args)
        if observed:
            sync.dispatch.after_cursor_execute(sync, cursor, sql, args, context, False)
        return raw
    except (psycopg.Error, sqlite3.Error) as exc:
        await raise_translated(connection, sql, args, exc)


async def _alone(
    connection: AsyncConnection, pooled: Any, driver: Any, compiled: Any, args: Any, commit: bool
) -> list[Any]:
    """The rows of one statement sent through libpq (:mod:`persistence._wire`), with
    ``COMMIT`` after it if ``commit``; a driver error of either is raised as psycopg's."""
    batch = Batch(driver, pooled.info)
    batch.add_named(compiled.wire, args, binary=compiled.binary)
    if commit:
        batch.add(_COMMIT)
    results = await _round_trip(connection, batch, committing=commit)
    found = batch.rows(results[0])
    if commit:
        batch.rows(results[1])  # (the error of a COMMIT that failed)
    return found


def _observed(sync: Connection) -> bool:
    """Whether statement listeners are registered (the flags SQLAlchemy's own execution
    checks before it looks at any listener)."""
    if not (sync._has_events or sync.engine._has_events):
        return False
    dispatch = sync.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


async def run_entering(
    connection: AsyncConnection,
    begin: bytes,
    entry: tuple[Statement, Mapping[str, Any]],
    statement: Statement | None,
    params: Mapping[str, Any],
    *,
    commit: bool = False,
) -> tuple[Any, list[Row] | PersistenceError]:
    """``begin`` (``BEGIN ...``), the tenant entry (``entry``: its statement and
    parameters) and ``statement`` in one round trip, as one libpq pipeline
    (:mod:`persistence._wire`; PostgreSQL only); ``commit``: ``COMMIT`` after them
    (skipped by the server if the statement fails).

    Returns the entry's result (its row as text, for ``persistence._enter.EntryRow``)
    and the statement's rows, or the error the statement raised, translated, for the
    caller to raise once it has read the entry: a statement sent for a tenant that was
    suspended since fails on row-level security, and the entry says why. Raises the
    translated error when the entry did not run (a dead connection: invalidated, as is
    one left mid-exchange by a cancellation). The transaction is ``begin``'s, explicit,
    so nothing commits before the unit of work's ``COMMIT``.
    """
    sync = sync_of(connection)
    if sync.invalidated:
        raise DatabaseUnavailableError(_LOST)
    pooled = sync.connection
    driver: Any = pooled.driver_connection
    head, head_args = arguments(entry[0], sync.dialect, entry[1])
    batch = Batch(driver, pooled.info)
    try:  # (dumping sends nothing: a value the adapters refuse fails here, alone)
        if begin:
            batch.add(begin)
        batch.add_named(head.wire, head_args, binary=False)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        await raise_translated(connection, head.sql, head_args, exc)
    if statement is None:
        return (await _entered(connection, batch, bool(begin), head, head_args))[0], []
    compiled, args = arguments(statement, sync.dialect, params)
    try:
        batch.add_named(compiled.wire, args, binary=compiled.binary)  # type: ignore[arg-type]
        if commit:
            batch.add(_COMMIT)
    except psycopg.Error as exc:
        await raise_translated(connection, compiled.sql, args, exc)
    observed = _observed(sync)
    if observed:
        context, cursor = _Context(), _cursor(pooled, driver)
        sync.dispatch.before_cursor_execute(sync, cursor, compiled.sql, args, context, False)
    entered, result, *committed = await _entered(
        connection, batch, bool(begin), head, head_args, committing=commit
    )
    try:  # its error (or its prepare's), or a value psycopg cannot load (year 10000)
        raw = batch.rows(result)
        for outcome in committed:  # (the error of a COMMIT that failed)
            batch.rows(outcome)
    except psycopg.Error as exc:
        try:
            await raise_translated(connection, compiled.sql, args, exc)
        except PersistenceError as translated:
            return entered, translated
    if observed:
        sync.dispatch.after_cursor_execute(sync, cursor, compiled.sql, args, context, False)
    return entered, rows(compiled, raw)


async def _entered(
    connection: AsyncConnection,
    batch: Batch,
    began: bool,
    head: Any,
    head_args: Any,
    *,
    committing: bool = False,
) -> list[Any]:
    """The results of ``batch`` (``BEGIN`` first if ``began``, then the tenant entry
    ``head``) after its ``BEGIN``; raises the translated error when the entry failed."""
    outcomes = await _round_trip(connection, batch, committing=committing)
    begin = outcomes.pop(0) if began else None
    entered = outcomes[0]
    if entered.status != _TUPLES_OK:
        failed = begin if begin is not None and begin.status == _FATAL_ERROR else entered
        cause = batch.error(failed) if failed.status == _FATAL_ERROR else _no_entry()
        await raise_translated(connection, head.sql, head_args, cause)
    return outcomes


async def _round_trip(
    connection: AsyncConnection, batch: Batch, *, committing: bool = False
) -> list[Any]:
    """Send ``batch`` and read its results: one result per statement. A connection left
    in an unknown state (broken, or the wait interrupted or cancelled) is invalidated:
    never pooled again; ``committing``: the batch ends with ``COMMIT``, and a connection
    lost on the way leaves its outcome unknown (DatabaseUnavailableError says so)."""
    driver = batch.driver
    try:
        batch.send()
        results = await driver.wait(exchange(driver.pgconn))
        return batch.outcomes(results)
    except BaseException as exc:
        await connection.invalidate(exc if isinstance(exc, Exception) else None)
        if not isinstance(exc, psycopg.Error):
            raise
        wrapped = _wrapped("(pipeline)", None, exc, invalidated=True)
        error = translate(wrapped)
        if committing and isinstance(error, DatabaseUnavailableError):
            raise DatabaseUnavailableError(_IN_DOUBT) from wrapped
        raise error from wrapped


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
    wrapped = _wrapped(statement, params, exc)
    raise translate(wrapped) from wrapped


def _wrapped(statement: str, params: Any, exc: Exception, *, invalidated: bool = False) -> Any:
    """``exc`` as SQLAlchemy's ``DBAPIError`` (what :func:`translate` reads; ``invalidated``:
    the connection was dropped for it)."""
    dbapi = psycopg.Error if isinstance(exc, psycopg.Error) else sqlite3.Error
    return sa_exc.DBAPIError.instance(
        statement, params, exc, dbapi, connection_invalidated=invalidated
    )


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
