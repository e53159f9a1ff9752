"""Begin a unit of work's transaction and enter its tenant in one round trip (PostgreSQL).

psycopg opens a transaction with its own ``BEGIN`` round trip before the first
statement (even in pipeline mode, where it syncs right after ``BEGIN``). Every unit
of work starts with ``BEGIN`` then ``persistence_enter()``, so :func:`enter` switches
the idle connection to autocommit, sends ``BEGIN`` and the call together in one
pipeline, and leaves the explicit transaction open. psycopg's ``commit()`` and
``rollback()`` act on the server's transaction status, not on the autocommit flag,
so SQLAlchemy ends the transaction as usual; the pool's checkin turns autocommit
off again (:func:`restore_on_checkin`) before anyone else gets the connection.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["enter", "restore_on_checkin"]

_ENTER = "SELECT * FROM persistence_enter(%s, %s)"


def restore_on_checkin(engine: Engine) -> None:
    """Return every pooled connection to psycopg's default (no autocommit)."""

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        if dbapi_conn is None or not dbapi_conn.autocommit:
            return
        if dbapi_conn.pgconn.transaction_status != TransactionStatus.IDLE:
            dbapi_conn.rollback()  # the pool's reset normally did this already
        dbapi_conn.autocommit = False


def enter(session: Session, tenant: str, workspace: str) -> dict[str, Any] | None:
    """``BEGIN`` + ``persistence_enter(tenant, workspace)`` in one round trip; its row.

    Runs on the session's own driver connection (SQLAlchemy cannot read results
    inside a pipeline). A driver error is re-raised as SQLAlchemy's so
    ``translate_errors`` maps it, and a broken connection is invalidated, not pooled.
    """
    connection = session.connection()
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    try:
        if driver.pgconn.transaction_status == TransactionStatus.IDLE:
            driver.autocommit = True
        with driver.cursor(row_factory=dict_row) as cursor:
            with driver.pipeline():  # leaving the block sends both, then reads both results
                if driver.autocommit:
                    cursor.execute(b"BEGIN")
                cursor.execute(_ENTER, (tenant, workspace), prepare=True)
            return cursor.fetchone()
    except psycopg.Error as exc:
        if driver.broken or driver.closed:
            connection.invalidate(exc)
        raise sa_exc.DBAPIError.instance(_ENTER, (tenant, workspace), exc, psycopg.Error) from exc
