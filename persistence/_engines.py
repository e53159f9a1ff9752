"""How the engines are built: the runtime engine (tenant units of work), the owner engine
(migrations, administration) and the embedded SQLite engine.

Both PostgreSQL engines are transactional, as SQLAlchemy users expect of ``db.engine``.
A unit of work sends ``BEGIN`` itself, in one simple-protocol query with the tenant
entry (:mod:`persistence._enter`, :mod:`persistence._begin`), so psycopg never opens a
transaction of its own; the pool's checkin (:mod:`persistence._pool`) switches off an
autocommit that SQL of the caller's own left on. The runtime engine's pool keeps
connections warm between units of work (:mod:`persistence._warm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from persistence import _pool, _role_check, _wire
from persistence._aio import in_background
from persistence._session_reset import POOLED
from persistence._warm import WarmAsyncQueuePool, WarmQueuePool
from persistence.errors import ConfigurationError
from persistence.settings import Settings

__all__ = [
    "QUERY_ONLY",
    "owner_engine",
    "owner_engine_async",
    "runtime_engine",
    "runtime_engine_async",
    "sqlite_engine",
]

QUERY_ONLY = "persistence_query_only"
_UTC = frozenset({"UTC", "Etc/UTC"})


def runtime_engine(url: URL, settings: Settings) -> Engine:
    """The engine of tenant units of work (on PostgreSQL: the runtime role; its pool keeps
    connections warm between them, see ``persistence._warm``)."""
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(url, settings)
    engine = create_engine(
        url, poolclass=WarmQueuePool, **_postgres(settings, settings.transaction_pooler)
    )
    return _runtime_hooks(engine, settings)


def owner_engine(url: URL, settings: Settings) -> Engine:
    """The engine of migrations and administration (the owner role)."""
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(url, settings)
    engine = create_engine(url, **_postgres(settings))
    _pool.install(engine, settings.pool_ping_after)
    _wire.install(engine, settings.prepared_statements)
    return engine


def runtime_engine_async(url: URL, settings: Settings) -> AsyncEngine:
    """:func:`runtime_engine` on asyncio: psycopg's ``AsyncConnection``, or aiosqlite,
    pooled by SQLAlchemy's async pool, with the same options and the same pool hooks
    (they run inside SQLAlchemy's greenlet, see ``persistence._blocking``)."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_async(url, settings)
    engine = create_async_engine(
        url, poolclass=WarmAsyncQueuePool, **_postgres(settings, settings.transaction_pooler)
    )
    _runtime_hooks(engine.sync_engine, settings)
    return engine


def owner_engine_async(url: URL, settings: Settings) -> AsyncEngine:
    """:func:`owner_engine` on asyncio."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_async(url, settings)
    engine = create_async_engine(url, **_postgres(settings))
    _pool.install(engine.sync_engine, settings.pool_ping_after)
    _wire.install(engine.sync_engine, settings.prepared_statements)
    return engine


def _runtime_hooks(engine: Engine, settings: Settings) -> Engine:
    _pool.install(engine, settings.pool_ping_after)
    _wire.install(engine, settings.prepared_statements)
    if settings.transaction_pooler:
        _pooled_connections(engine)
    if not settings.allow_rls_bypass:
        _role_check.check_on_connect(engine)
    return engine


def _pooled_connections(engine: Engine) -> None:
    """Behind a transaction pooler: mark each connection so that a unit of work resets a
    session it handed out within its own transaction (``persistence._session_reset``),
    and refuse one whose server-side defaults are not the ones the library relies on
    without startup options: DateStyle ISO (the tenant entry's timestamps are parsed
    from their text), TimeZone UTC. Both are reported by the server (and by PgBouncer)
    at connect: no round trip."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[POOLED] = True
        info = getattr(dbapi_conn, "driver_connection", dbapi_conn).info
        datestyle = info.parameter_status("DateStyle") or ""
        timezone = info.parameter_status("TimeZone") or ""
        if datestyle.startswith("ISO") and timezone in _UTC:
            return
        raise ConfigurationError(
            f"behind a transaction pooler, connections must start with DateStyle ISO and "
            f"TimeZone UTC (this one has {datestyle!r} and {timezone!r}): set them on the "
            "server, e.g. ALTER ROLE ... SET DateStyle = 'ISO' / SET TimeZone = 'UTC', or "
            "PgBouncer's datestyle=ISO timezone=UTC on the database's line"
        )


def _postgres(settings: Settings, pooled: bool = False) -> dict[str, Any]:
    """The PostgreSQL engine's options (sync and async engines alike); ``pooled``: through
    a transaction pooler, which refuses startup options."""
    s = settings
    connect_args: dict[str, Any] = {
        "connect_timeout": s.connect_timeout,
        "application_name": "persistence",
        "client_encoding": "utf8",  # the entry row is decoded from its text
        # psycopg prepares nothing (persistence._wire prepares what it sends)
        "prepare_threshold": None,
    }
    if not pooled:
        # DateStyle ISO: the tenant entry's timestamps are parsed from their text;
        # TimeZone UTC: psycopg returns timestamps in datetime.UTC, kept as they are
        connect_args["options"] = (
            f"-c statement_timeout={s.statement_timeout_ms} "
            f"-c idle_in_transaction_session_timeout={s.idle_in_transaction_timeout_ms} "
            "-c DateStyle=ISO -c TimeZone=UTC"
        )
    return dict(
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        pool_pre_ping=False,  # _pool pings only connections that sat idle instead
        pool_size=s.pool_size,
        max_overflow=s.max_overflow,
        pool_timeout=s.pool_timeout,
        pool_recycle=s.pool_recycle,
        pool_reset_on_return=None,  # _pool's checkin rolls back what is still open
        connect_args=connect_args,
    )


def _json_text(value: Any) -> str:
    """JSON columns are written with orjson (values were validated as exact JSON first)."""
    return orjson.dumps(value).decode()


def sqlite_engine(url: URL, settings: Settings) -> Engine:
    """The embedded engine: WAL, foreign keys, every transaction ``BEGIN IMMEDIATE``."""
    engine = create_engine(_sqlite_file(url), **_sqlite_options(settings))
    _sqlite_hooks(engine, settings)
    return engine


def _sqlite_async(url: URL, settings: Settings) -> AsyncEngine:
    """:func:`sqlite_engine` on aiosqlite (the sqlite3 driver on a worker thread per
    connection), with the same hooks."""
    engine = create_async_engine(
        _sqlite_file(url).set(drivername="sqlite+aiosqlite"), **_sqlite_options(settings)
    )
    _sqlite_hooks(engine.sync_engine, settings)
    return engine


def _sqlite_file(url: URL) -> URL:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        url = url.set(database=str(Path(database).expanduser()))
    return url


def _sqlite_options(settings: Settings) -> dict[str, Any]:
    return dict(
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
    )


def _sqlite_hooks(engine: Engine, settings: Settings) -> None:

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN (the driver's own handling breaks
        # savepoints), and make every transaction IMMEDIATE so concurrent writers queue on
        # the busy timeout instead of failing when a read lock is upgraded.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        if dbapi_conn is not None and record.info.pop(QUERY_ONLY, False):
            dbapi_conn.execute("PRAGMA query_only = OFF")  # after a read-only unit of work

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "close")
    def _on_close(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        _roll_back_before_close(dbapi_conn)


def _roll_back_before_close(dbapi_conn: Any) -> None:
    """End the transaction of a SQLite connection the pool is about to close.

    sqlite3's ``close()`` leaves a connection's transaction, and the write lock its
    ``BEGIN IMMEDIATE`` took, in place for as long as a statement of it is unfinished,
    that is until the cursor holding that statement is garbage-collected. That is the
    case of a statement a cancellation cut short on asyncio: the pool invalidates and
    closes its connection while the cursor lives on in the ``CancelledError``'s
    traceback, and every other writer waits out the busy timeout, then fails with
    "database is locked". ``ROLLBACK`` ends the transaction whatever is pending (an idle
    connection, the case of ``dispose()``, is left alone).

    aiosqlite runs a connection's calls on its thread one after the other: the rollback
    is queued by a task started now, which runs before the task in which the pool's
    invalidation then closes the connection (``terminate``), and is not waited for, so
    that a second cancellation cannot come between the two.
    """
    driver = getattr(dbapi_conn, "driver_connection", dbapi_conn)
    try:
        if not driver.in_transaction:  # (a flag: no statement, no thread hop)
            return  # idle: nothing to roll back
    except (sqlite3.Error, ValueError):  # ValueError: aiosqlite's, closed already
        return
    if isinstance(driver, sqlite3.Connection):
        with contextlib.suppress(sqlite3.Error):
            driver.rollback()
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # (the connection is garbage-collected, outside the loop)
    in_background(_quietly(driver.rollback()))


async def _quietly(rollback: Awaitable[None]) -> None:
    with contextlib.suppress(sqlite3.Error, ValueError):  # ValueError: already closed
        await rollback
