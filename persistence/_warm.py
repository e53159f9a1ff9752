"""Connections kept warm between tenant units of work: a connection a unit of work ended
cleanly stays checked out, parked here, and the next unit of work takes it without a
pool checkout and checkin.

A checkout and a checkin through SQLAlchemy's pool build a ``Connection`` and a pool
proxy, dispatch the pool events and, on the asyncio engine, run both in a greenlet of
their own: that is more client CPU than the whole round trip of a short unit of work
(see ``docs/performance.md``). A parked connection is still the pool's: the runtime
engine's pool (:class:`WarmQueuePool` / :class:`WarmAsyncQueuePool`)

* counts it as checked in (``checkedout()``, ``status()``), since nothing uses it;
* stops parking while any checkout is in progress and gives every parked connection back
  before a checkout would wait, so a checkout (a unit of work's, or ``db.engine.connect()``
  of your own) never waits for a connection that sits parked;
* gives them back on ``dispose()`` (``db.close()``); a pool recreated without closing its
  connections (``engine.dispose(close=False)`` in a forked child) parks afresh.

What is parked is exactly what the pool's checkin would have pooled: no transaction open,
no session state (``persistence._session_reset``), not invalidated. A parked connection
that sat idle for ``pool_ping_after`` seconds, that was parked before a connection of the
engine was found dead (``persistence._pool.doubt``), or that is due for ``pool_recycle``,
is not handed out: it goes back through the pool, whose checkout pings or replaces it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Generic, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

__all__ = [
    "PARKED_AT",
    "WarmAsyncQueuePool",
    "WarmConnections",
    "WarmQueuePool",
    "born",
    "check_in_parked",
    "mark_parked",
    "next_driver",
    "warm_of",
]

ConnT = TypeVar("ConnT")
PARKED_AT = "persistence_parked_at"  # (pool record info: idle since, for the checkin)
# (the parked connection, when it was parked, when its pool record was created)
_Parked = tuple[Any, float, float]


class WarmConnections(Generic[ConnT]):
    """The parked connections of one pool, most recently parked last (handed out first:
    the others age and go back to the pool)."""

    def __init__(self, limit: int, recycle: float):
        self._lock = threading.Lock()  # (threads of the sync API; never held across I/O)
        self._parked: list[_Parked] = []
        self._checkouts = 0  # checkouts in progress in the pool
        self.limit = limit
        self.recycle = recycle
        self.idle = 0.0  # set by persistence._pool.install, with:
        self.doubted_at: list[float] = [-1.0]

    def __len__(self) -> int:
        return len(self._parked)

    def next(self) -> ConnT | None:
        """The connection the next unit of work would take (if it is fit), or None."""
        parked = self._parked
        return parked[-1][0] if parked else None

    def park(self, connection: ConnT, born: float) -> bool:
        """Keep ``connection`` (ended cleanly; its pool record created at ``born``, in
        ``time.time()``) for the next unit of work; False if it must be checked in
        instead (a checkout is waiting or starting, or enough are parked)."""
        with self._lock:
            if self._checkouts or len(self._parked) >= self.limit:
                return False
            self._parked.append((connection, time.monotonic(), born))
            return True

    def take(self) -> tuple[ConnT | None, list[tuple[ConnT, float]]]:
        """A parked connection fit to use, or None; and the parked connections found
        unfit on the way, with when each was parked, for the caller to check in."""
        unfit: list[tuple[ConnT, float]] = []
        now, wall = time.monotonic(), time.time()
        with self._lock:
            while self._parked:
                connection, parked_at, born = self._parked.pop()
                # idle too long, or parked before a dead connection was found
                aged = now - parked_at >= self.idle or parked_at <= self.doubted_at[0]
                due = self.recycle >= 0 and wall - born >= self.recycle
                if not (aged or due):
                    return connection, unfit
                unfit.append((connection, parked_at))
                if aged:  # every older one is aged too
                    unfit += self._released()
        return None, unfit

    def checkout_starts(self) -> list[tuple[ConnT, float]]:
        """A checkout of the pool begins: no parking until it ends, and the connections
        parked now, for the pool to check in first, so that the checkout can have one
        instead of waiting. (A unit of work checks out only when it found none parked,
        so this is nearly always empty; a checkout of your own takes them all back.)"""
        with self._lock:
            self._checkouts += 1
            return self._released()

    def checkout_ends(self) -> None:
        with self._lock:
            self._checkouts -= 1

    def release_all(self) -> list[tuple[ConnT, float]]:
        with self._lock:
            return self._released()

    def _released(self) -> list[tuple[ConnT, float]]:
        """Every parked connection, with when it was parked, taken off the stack (the
        lock is held)."""
        released = [(connection, at) for connection, at, _ in self._parked]
        self._parked.clear()
        return released


_ABANDONED: list[object] = []


class _Warming:
    """What the runtime engine's pool adds to SQLAlchemy's queue pool (see the module)."""

    warm: WarmConnections[Any]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        pool: Any = self
        self.warm = WarmConnections(limit=pool.size(), recycle=pool._recycle)

    def _do_get(self) -> Any:
        _check_in_all(self.warm.checkout_starts())
        try:
            return super()._do_get()  # type: ignore[misc]
        finally:
            self.warm.checkout_ends()

    def checkedout(self) -> int:
        return super().checkedout() - len(self.warm)  # type: ignore[misc,no-any-return]

    def dispose(self) -> None:
        _check_in_all(self.warm.release_all())
        super().dispose()  # type: ignore[misc]

    def recreate(self) -> Any:
        # After dispose() nothing is parked; after dispose(close=False) (a forked child)
        # the parked connections are the parent's: never used, closed nor garbage
        # collected here (collecting them would end their transaction on the parent's
        # socket), as SQLAlchemy leaves the connections it dereferences.
        _ABANDONED.extend(self.warm.release_all())
        new: Any = super().recreate()  # type: ignore[misc]
        new.warm.idle, new.warm.doubted_at = self.warm.idle, self.warm.doubted_at
        return new


class WarmQueuePool(_Warming, QueuePool):
    """The sync runtime engine's pool."""


class WarmAsyncQueuePool(_Warming, AsyncAdaptedQueuePool):
    """The asyncio runtime engine's pool."""


def mark_parked(connection: Any, parked_at: float) -> None:
    """``connection`` (a sync ``Connection``, parked since ``parked_at``) is about to be
    checked in: the pool's checkin (``persistence._pool``) counts it idle since then."""
    connection.connection.info[PARKED_AT] = parked_at


def check_in_parked(connection: Any, parked_at: float) -> None:
    """Check in a parked connection (a ``Connection``, or an ``AsyncConnection`` from
    inside SQLAlchemy's greenlet, as in the pool's own methods)."""
    sync = getattr(connection, "sync_connection", connection)
    if sync is None or sync.closed:
        return
    mark_parked(sync, parked_at)
    sync.close()


def _check_in_all(parked: list[tuple[Any, float]]) -> None:
    for connection, parked_at in parked:
        check_in_parked(connection, parked_at)


def born(connection: Any) -> float:
    """When the pool record under ``connection`` (a sync ``Connection``) was created."""
    return float(connection.connection._connection_record.starttime)


def next_driver(engine: Any) -> Any:
    """The driver connection the next unit of work on ``engine`` (a sync ``Engine``)
    would take warm, or None (for tracers that attach to connections at checkout)."""
    warm = warm_of(engine)
    parked = warm.next() if warm is not None else None
    if parked is None:
        return None
    return getattr(parked, "sync_connection", parked).connection.driver_connection


def warm_of(engine: Any) -> WarmConnections[Any] | None:
    """The parked connections of ``engine``'s pool (a sync ``Engine``), if it parks."""
    return getattr(engine.pool, "warm", None)
