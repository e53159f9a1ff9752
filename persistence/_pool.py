"""Connection pool liveness checks that cost a round trip only when they can matter."""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from persistence._blocking import blocking
from persistence._session_reset import DIRTY, reset_session
from persistence._warm import PARKED_AT, warm_of

__all__ = ["doubt", "install"]

_IDLE_SINCE = "persistence_idle_since"
# Per engine, in a one-item list the checkout listener holds (a read costs nothing next
# to a weak-keyed lookup): when a connection of it was last found dead (see doubt()).
_DOUBTED_AT: WeakKeyDictionary[Engine, list[float]] = WeakKeyDictionary()


def install(engine: Engine, idle: float) -> None:
    """What ``engine``'s pool does at checkout and checkin (one listener each: every
    listener is a dispatch on every unit of work).

    Checkout: ping the connection only if it sat idle for ``idle`` seconds, or if it was
    checked in before the engine last found a dead one (:func:`doubt`); mark its session
    dirty (``persistence._session_reset``: a unit of work marks it clean as it begins).
    Checkin: roll back a transaction still open, reset a dirty session, switch
    autocommit off if something switched it on.

    SQLAlchemy's ``pool_pre_ping`` spends a round trip on every checkout, that is on
    every unit of work. A connection checked in moments ago is alive (HikariCP skips
    its check within 500 ms of last use for the same reason); one idle for longer is
    pinged and, if dead, replaced by the pool before anyone uses it. ``idle=0`` pings
    on every checkout.
    """
    doubted_at = _DOUBTED_AT.setdefault(engine, [-1.0])
    warm = warm_of(engine)
    if warm is not None:  # (persistence._warm: parked connections age by the same rules)
        warm.idle, warm.doubted_at = idle, doubted_at

    @event.listens_for(engine, "checkout")
    def _checkout(
        dbapi_conn: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        info = record.info
        info[DIRTY] = True  # raw engine.connect() use may leave anything
        since = info.get(_IDLE_SINCE)
        if since is None:
            return  # just connected
        if time.monotonic() - since < idle and since > doubted_at[0]:
            return  # used a moment ago, and no connection died since
        _ping(engine, dbapi_conn)

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        info = record.info
        parked_at = info.pop(PARKED_AT, None)  # (idle since it was parked)
        info[_IDLE_SINCE] = time.monotonic() if parked_at is None else parked_at
        if dbapi_conn is None:
            return
        dbapi_conn = blocking(dbapi_conn)  # (the async engine's: blocking calls on it)
        if not _rolled_back(dbapi_conn, record):
            return  # invalidated: a connection in an unknown state is never pooled
        if info.get(DIRTY) and not reset_session(dbapi_conn, record):
            return
        info[DIRTY] = False
        if dbapi_conn.autocommit:
            dbapi_conn.autocommit = False


def _rolled_back(dbapi_conn: Any, record: ConnectionPoolEntry) -> bool:
    """End a transaction still open on a connection going back to the pool (the engines
    set SQLAlchemy's own reset on return off: this check costs no round trip on a
    connection whose unit of work ended its transaction, as every one does)."""
    if dbapi_conn.pgconn.transaction_status == TransactionStatus.IDLE:
        return True
    try:
        dbapi_conn.rollback()
    except psycopg.Error as exc:
        record.invalidate(exc)
        return False
    return True


def _ping(engine: Engine, dbapi_conn: Any) -> None:
    try:
        alive = engine.dialect.do_ping(dbapi_conn)
    except Exception as exc:
        doubt(engine)
        # The pool discards this connection and checks out another one.
        raise sa_exc.DisconnectionError(f"pooled connection is dead: {exc}") from exc
    if not alive:
        doubt(engine)
        raise sa_exc.DisconnectionError("pooled connection is dead")


def doubt(engine: Engine) -> None:
    """A connection of ``engine`` was found dead: ping every connection checked in
    before now at its next checkout, whatever its idle time.

    A restart or a failover kills every pooled connection at once; without this, each
    would fail one unit of work in turn. Pinging (one round trip each, once) keeps the
    connections that are still alive, where SQLAlchemy's own pool invalidation would
    reconnect them all (TCP, TLS, authentication, each).
    """
    _DOUBTED_AT.setdefault(engine, [-1.0])[0] = time.monotonic()
