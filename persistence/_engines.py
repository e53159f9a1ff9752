"""How the engines are built: the runtime engine (tenant units of work), the owner engine
(migrations, administration) and the embedded SQLite engine.

Both PostgreSQL engines are transactional, as SQLAlchemy users expect of ``db.engine``:
a unit of work switches its connection to autocommit to send ``BEGIN`` itself, with
its first statement (:mod:`persistence._enter`), and the pool's checkin switches it
back (:mod:`persistence._pool`; the two switches cost about 1.4 µs of client CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import ConnectionPoolEntry

from persistence import _pool, _role_check
from persistence.settings import Settings

__all__ = ["QUERY_ONLY", "owner_engine", "runtime_engine", "sqlite_engine"]

QUERY_ONLY = "persistence_query_only"


def runtime_engine(url: URL, settings: Settings) -> Engine:
    """The engine of tenant units of work (on PostgreSQL: the runtime role)."""
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(url, settings)
    engine = _postgres(url, settings)
    _pool.install(engine, settings.pool_ping_after)
    if not settings.allow_rls_bypass:
        _role_check.check_on_connect(engine)
    return engine


def owner_engine(url: URL, settings: Settings) -> Engine:
    """The engine of migrations and administration (the owner role)."""
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(url, settings)
    engine = _postgres(url, settings)
    _pool.install(engine, settings.pool_ping_after)
    return engine


def _postgres(url: URL, settings: Settings) -> Engine:
    s = settings
    return create_engine(
        url,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        pool_pre_ping=False,  # _pool pings only connections that sat idle instead
        pool_size=s.pool_size,
        max_overflow=s.max_overflow,
        pool_timeout=s.pool_timeout,
        pool_recycle=s.pool_recycle,
        pool_reset_on_return=None,  # _pool's checkin rolls back what is still open
        connect_args={
            "connect_timeout": s.connect_timeout,
            # DateStyle ISO: the tenant entry's timestamps are parsed from their text;
            # TimeZone UTC: psycopg returns timestamps in datetime.UTC, kept as they are
            "options": f"-c statement_timeout={s.statement_timeout_ms} "
            f"-c idle_in_transaction_session_timeout={s.idle_in_transaction_timeout_ms} "
            "-c DateStyle=ISO -c TimeZone=UTC",
            "application_name": "persistence",
            "client_encoding": "utf8",  # the entry row is decoded from its text
            # None: psycopg prepares nothing, even where the code asks it to
            **({} if s.prepared_statements else {"prepare_threshold": None}),
        },
    )


def _json_text(value: Any) -> str:
    """JSON columns are written with orjson (values were validated as exact JSON first)."""
    return orjson.dumps(value).decode()


def sqlite_engine(url: URL, settings: Settings) -> Engine:
    """The embedded engine: WAL, foreign keys, every transaction ``BEGIN IMMEDIATE``."""
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        url = url.set(database=str(Path(database).expanduser()))
    engine = create_engine(
        url,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
    )

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

    return engine
