"""Connection pool liveness checks that cost a round trip only when they can matter."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

__all__ = ["ping_when_idle"]

_IDLE_SINCE = "persistence_idle_since"


def ping_when_idle(engine: Engine, idle: float) -> None:
    """Ping a pooled connection on checkout only if it sat idle for ``idle`` seconds.

    SQLAlchemy's ``pool_pre_ping`` spends a round trip on every checkout, that is on
    every unit of work. A connection checked in moments ago is alive (HikariCP skips
    its check within 500 ms of last use for the same reason); one idle for longer is
    pinged and, if dead, replaced by the pool before anyone uses it. ``idle=0`` pings
    on every checkout.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(
        dbapi_conn: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle:
            return  # just connected, or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool discards this connection and checks out another one.
            raise sa_exc.DisconnectionError(f"pooled connection is dead: {exc}") from exc
        if not alive:
            raise sa_exc.DisconnectionError("pooled connection is dead")
