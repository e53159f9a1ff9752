"""The one executor: a SQLAlchemy Core statement, compiled once per dialect, run on the
unit of work's own driver connection, every driver error translated here.

Each operation's SQL is defined once, as Core built from the models' tables, and wrapped
in a :class:`Statement`. On first use per dialect the statement is compiled and what its
execution needs is kept: the SQL text, the order of its parameters (SQLite's ``?``), the
bind processors of the parameters whose type converts them (``UTCDateTime`` refusing a
naive timestamp, ``Uuid`` on SQLite, ``JSON``), the literal values the statement carries,
and the result columns by name with their result processors. Running it then costs the
driver's own call plus a few dictionary look-ups, where SQLAlchemy's execution path
(statement cache key, parameter processing, result metadata, row objects) costs several
times that for the short statements that dominate an agent platform's traffic.

* PostgreSQL: psycopg, as a server-side prepared statement (``prepare=True``; nothing is
  prepared when the ``prepared_statements`` setting sets ``prepare_threshold=None``), on
  a cursor kept per pooled connection.
* SQLite: the ``sqlite3`` connection of the unit of work, with positional parameters.

A statement with an expanding parameter (``IN`` of a list) cannot be a
:class:`Statement` (its SQL depends on the list's length): it is built per call and run
by :func:`execute`. The
engine's ``before_cursor_execute`` / ``after_cursor_execute`` listeners, when there are
any, see every statement :func:`run` sends (the context argument is a plain object, not
an ``ExecutionContext``; a ``retval=True`` listener cannot rewrite the statement, and
``after_cursor_execute`` is not called for a statement that failed). ``BEGIN`` with the
tenant entry and ``COMMIT`` (:func:`simple_query`) bypass them. With no listener they
cost one attribute check.

Rows come back as named tuples (``row.version``), mapped by column name, never by
position.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import psycopg
import psycopg.errors
from psycopg import generators
from psycopg.pq import ExecStatus
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from persistence.errors import DatabaseUnavailableError, InvalidInputError, translate

__all__ = [
    "Row",
    "Statement",
    "execute",
    "pooled_cursor",
    "raise_translated",
    "run",
    "run_one",
    "run_scalar",
    "simple_query",
]

Row = Any  # a named tuple of the statement's result columns
_Processor = Callable[[Any], Any]
CursorT = TypeVar("CursorT", bound=psycopg.Cursor[Any])
_TUPLES_OK = ExecStatus.TUPLES_OK
_FATAL_ERROR = ExecStatus.FATAL_ERROR
_CURSOR = "persistence_executor_cursor"


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What running one statement on one dialect needs, worked out once."""

    sql: str
    positional: tuple[str, ...] | None  # parameter order for "?" (SQLite)
    defaults: Mapping[str, Any]  # values the statement itself carries (literals)
    processors: tuple[tuple[str, _Processor], ...]  # parameters whose type converts them
    row: Callable[[Any], Row] | None  # builds a named tuple; None: no result columns
    results: tuple[tuple[int, _Processor], ...]  # result columns whose type converts them


class Statement:
    """A Core statement (``select``, ``insert``, ``update``, ``delete``, a CTE ...) to be
    run by :func:`run`; compiled on first use per dialect."""

    __slots__ = ("_compiled", "clause", "name")

    def __init__(self, clause: ClauseElement, name: str):
        self.clause = clause
        self.name = name
        self._compiled: dict[str, _Compiled] = {}

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self, dialect)
        return found

    def sql(self, dialect: Dialect) -> str:
        """The SQL this statement sends on ``dialect`` (what the tests compare with)."""
        return self.compiled(dialect).sql


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    compiled: Any = statement.clause.compile(dialect=dialect)
    binds = compiled.binds
    defaults: dict[str, Any] = {}
    processors: list[tuple[str, _Processor]] = []
    for name, bind in binds.items():
        if bind.expanding:  # its SQL depends on the list's length: not compiled once
            raise RuntimeError(f"{statement!r}: an IN-list parameter; run it with execute()")
        if bind.value is not None or not bind.required:
            defaults[name] = bind.effective_value
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors.append((name, processor))
    columns = list(getattr(statement.clause, "exported_columns", ()))
    if getattr(statement.clause, "_returning", None) == () and not _selects(statement.clause):
        columns = []
    # an unlabeled expression has no key: name it by position (run_scalar reads it so)
    keys = [column.key or f"column{index}" for index, column in enumerate(columns)]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"{statement!r}: result columns share a name: {keys}")
    results = []
    for index, column in enumerate(columns):
        processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if processor is not None:
            results.append((index, processor))
    row_type: Any = namedtuple(f"{statement.name}_row", keys) if keys else None
    row = row_type._make if row_type is not None else None
    positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return _Compiled(
        sql=compiled.string,
        positional=positional,
        defaults=defaults,
        processors=tuple(processors),
        row=row,
        results=tuple(results),
    )


def _selects(clause: Any) -> bool:
    return hasattr(clause, "selected_columns")


def run(connection: Connection, statement: Statement, params: Mapping[str, Any]) -> list[Row]:
    """Run ``statement`` with ``params`` on ``connection`` (the unit of work's); its rows.

    Raises the :class:`~persistence.errors.PersistenceError` a driver error maps to.
    """
    compiled = statement.compiled(connection.dialect)
    values = dict(compiled.defaults, **params) if compiled.defaults else dict(params)
    try:
        for name, processor in compiled.processors:
            values[name] = processor(values[name])
    except (TypeError, ValueError) as exc:  # a column type refused the value (a naive time)
        raise InvalidInputError(f"{statement.name}: {exc}") from exc
    args: Any = values
    if compiled.positional is not None:
        args = tuple([values[name] for name in compiled.positional])
    rows = _execute(connection, compiled.sql, args)
    return _rows(compiled, rows) if compiled.row is not None else []


def run_one(connection: Connection, statement: Statement, params: Mapping[str, Any]) -> Row:
    """The first row of :func:`run`, or ``None``."""
    rows = run(connection, statement, params)
    return rows[0] if rows else None


def run_scalar(connection: Connection, statement: Statement, params: Mapping[str, Any]) -> Any:
    """The first column of the first row of :func:`run`, or ``None``."""
    rows = run(connection, statement, params)
    return rows[0][0] if rows else None


def _rows(compiled: _Compiled, raw: list[Any]) -> list[Row]:
    make = compiled.row
    assert make is not None
    if not compiled.results:
        return [make(values) for values in raw]
    out = []
    for values in raw:
        values = list(values)
        for index, processor in compiled.results:
            values[index] = processor(values[index])
        out.append(make(values))
    return out


def _execute(connection: Connection, sql: str, args: Any) -> list[Any]:
    if connection.invalidated:  # never a statement on a silently reconnected connection
        raise DatabaseUnavailableError(
            "the unit of work lost its database connection: nothing more can run in it"
        )
    # The flags SQLAlchemy's own execution checks before it looks at any listener.
    observed = connection._has_events or connection.engine._has_events
    if observed:
        dispatch = connection.dispatch
        observed = bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)
    pooled = connection.connection
    driver: Any = pooled.driver_connection
    is_pg = type(driver) is psycopg.Connection or isinstance(driver, psycopg.Connection)
    try:
        cursor = _cursor(pooled, driver) if is_pg else driver.cursor()
        if observed:  # statement listeners (tracing, statement counts) see these too
            context = _Context()
            connection.dispatch.before_cursor_execute(connection, cursor, sql, args, context, False)
        if is_pg:
            cursor.execute(sql, args, prepare=True)
            result = cursor.pgresult  # (cursor.description would build column objects)
            rows = cursor.fetchall() if result and result.status == _TUPLES_OK else []
            _release(pooled, cursor)
        else:
            cursor.execute(sql, args)
            rows = cursor.fetchall()
            cursor.close()
        if observed:
            connection.dispatch.after_cursor_execute(connection, cursor, sql, args, context, False)
        return rows
    except (psycopg.Error, sqlite3.Error) as exc:
        raise_translated(connection, sql, args, exc)


def _cursor(pooled: Any, driver: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """The cursor kept for the pooled connection (see :func:`pooled_cursor`)."""
    info = pooled.info
    cursor: psycopg.Cursor[Any] | None = info.get(_CURSOR)
    if cursor is None or cursor.closed:
        cursor = info[_CURSOR] = psycopg.Cursor(driver)
    return cursor


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


def _release(pooled: Any, cursor: psycopg.Cursor[Any]) -> None:
    """Drop the cursor's result (libpq's copy of the rows, a large payload's included)
    so a pooled connection does not hold it until its next statement."""
    reset = getattr(cursor, "_reset", None)  # psycopg 3.1-3.3; else a cursor per call
    if reset is not None:
        reset()
    else:
        pooled.info.pop(_CURSOR, None)
        cursor.close()


def simple_query(driver: psycopg.Connection[Any], query: bytes) -> list[Any]:
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
    results: list[Any] = driver.wait(generators.execute(pgconn))
    for result in results:
        if result.status == _FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
    return results


def raise_translated(
    connection: Connection, statement: str, params: Any, exc: Exception
) -> NoReturn:
    """Raise the library's error for a driver error of ``connection``, invalidating the
    connection first if the error broke it (so the pool does not hand it out again)."""
    driver: Any = connection.connection.driver_connection
    if isinstance(driver, psycopg.Connection) and (driver.broken or driver.closed):
        connection.invalidate(exc)
    dbapi = psycopg.Error if isinstance(exc, psycopg.Error) else sqlite3.Error
    wrapped: Any = sa_exc.DBAPIError.instance(statement, params, exc, dbapi)
    _raise_mapped(wrapped)


def _raise_mapped(exc: sa_exc.DBAPIError) -> NoReturn:
    raise translate(exc) from exc


class _Context:
    """Stands in for SQLAlchemy's execution context in statement events: listeners
    (OpenTelemetry's, for one) keep per-statement attributes on it."""


def execute(
    connection: Connection, clause: Any, params: Mapping[str, Any] | None = None
) -> list[Row]:
    """Run a statement built per call (a page query with optional filters, a batch) through
    SQLAlchemy's own execution and its compiled cache; its rows, errors translated.

    The hot paths use :func:`run` with a :class:`Statement` defined once instead.
    """
    if connection.invalidated:
        raise DatabaseUnavailableError(
            "the unit of work lost its database connection: nothing more can run in it"
        )
    try:
        result = connection.execute(clause, dict(params) if params else None)
        return list(result.all()) if result.returns_rows else []
    except sa_exc.DBAPIError as exc:
        _raise_mapped(exc)
