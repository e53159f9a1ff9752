"""A pooled PostgreSQL connection goes back to the pool with no session state left.

Session state outlives a transaction: a session-level ``SET`` or ``set_config(...,
false)`` (a tenant setting among them), ``search_path``, ``SET ROLE``, temporary
tables, session advisory locks, ``LISTEN``, cursors ``WITH HOLD``, statements
``PREPARE``d in SQL. Left on a pooled connection, the next unit of work (another
tenant's) would inherit it. ``DISCARD ALL`` would clear it but also drops the
server-side prepared statements the hot paths run on (psycopg would prepare each one
again), and costs a round trip on every checkin.

So a connection is reset only when something could have left state on it: it is
marked dirty when it is checked out, a tenant or admin unit of work marks it clean
as it begins (the library's own statements set nothing beyond the transaction), and
handing ``uow.session`` to the caller marks it dirty again. On checkin a dirty
connection gets :data:`RESET`, one round trip: ``DISCARD ALL`` but ``DISCARD PLANS``.
Its ``DEALLOCATE ALL`` drops the library's prepared statements too (``persistence._wire``
prepares them again on the next units of work): SQL of the caller's own may have
deallocated or replaced any of them.
``RESET ALL`` returns every setting to its value at connection start, so the startup
options (``statement_timeout``, ``idle_in_transaction_session_timeout``) stay.

Behind a transaction pooler (``Settings.transaction_pooler``: PgBouncer's transaction
mode) the server session belongs to a client only for one transaction: the checkin's
reset, a transaction of its own, goes to whichever server connection is free, not
necessarily the one SQL of the caller's ran on, and the next client of that one
inherits its state. So a unit of work that handed out its session resets it within its
own transaction (:func:`reset_before_end`): :data:`RESET` before its ``COMMIT`` (every
statement of it may run in a transaction block; what is transactional in it is undone
with the caller's own state if the commit fails), or in one query with its
``ROLLBACK``. Raw ``engine.connect()`` use has no such end: behind a transaction pooler,
session state it leaves may reach other clients (docs/tenancy.md).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "DIRTY",
    "POOLED",
    "PREPARED",
    "RESET",
    "mark_clean",
    "mark_dirty",
    "reset_before_end",
    "reset_session",
]

DIRTY = "persistence_session_dirty"
#: A connection through a transaction pooler (pool entry info, ``persistence._engines``).
POOLED = "persistence_transaction_pooled"
#: Where ``persistence._wire`` keeps a connection's prepared statements (pool entry info).
PREPARED = "persistence_prepared"
RESET = (
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; DEALLOCATE ALL"
)
_RESET = RESET.encode()


def mark_dirty(connection: Connection) -> None:
    """Reset ``connection``'s session when it goes back to the pool."""
    connection.connection.info[DIRTY] = True


def mark_clean(connection: Connection) -> None:
    """Only the library's own statements run on ``connection`` until marked dirty."""
    connection.connection.info[DIRTY] = False


def reset_before_end(connection: Connection, *, commit: bool) -> bytes | None:
    """Behind a transaction pooler, what a unit of work sends on ``connection`` to reset a
    session it handed out while its transaction still holds the server connection: the
    reset before a ``COMMIT``, or ``ROLLBACK`` and the reset in one query. None when
    there is nothing to reset, or no transaction open (the checkin's reset then)."""
    info = connection.connection.info
    if not (info.get(DIRTY) and info.get(POOLED)):
        return None
    status = connection.connection.driver_connection.pgconn.transaction_status  # type: ignore[union-attr]
    if status == TransactionStatus.IDLE or (commit and status != TransactionStatus.INTRANS):
        return None
    return _RESET if commit else b"ROLLBACK; " + _RESET


def reset_session(dbapi_conn: Any, record: ConnectionPoolEntry) -> bool:
    """Reset the session of a connection going back to the pool (``persistence._pool``
    calls it for a dirty one); False when that failed and the connection was dropped."""
    record.info.pop(PREPARED, None)  # (persistence._wire: deallocated below)
    try:
        _reset(dbapi_conn)
    except psycopg.Error as exc:
        record.invalidate(exc)  # never pool a connection in an unknown state
        return False
    return True


def _reset(driver: psycopg.Connection[Any]) -> None:
    if driver.pgconn.transaction_status != TransactionStatus.IDLE:
        driver.rollback()  # the pool's reset normally did this already
    autocommit = driver.autocommit
    driver.autocommit = True  # DISCARD TEMP and friends outside a transaction block
    try:
        driver.execute(RESET)
    finally:
        driver.autocommit = autocommit
