"""The driver connection a pool hook works on, with blocking calls on both engines.

The pool's hooks (``_pool``, ``_role_check``, ``_session_reset``) run inside the pool's
checkout, checkin and connect, which are synchronous on both engines: on the asyncio
engine SQLAlchemy runs them inside its greenlet, where an awaitable can be waited for
with ``sqlalchemy.util.await_``. The hooks get a psycopg ``Connection`` from the sync
engine (as it is), and from the async engine a :class:`_Blocking` around its
``AsyncConnection`` that offers the few calls they make.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.util import await_

__all__ = ["blocking"]


def blocking(dbapi_conn: Any) -> Any:
    """A psycopg connection with blocking ``rollback``, ``execute`` and ``autocommit``,
    for the pool's DBAPI connection ``dbapi_conn`` (sync or async-adapted)."""
    if isinstance(dbapi_conn, psycopg.Connection):
        return dbapi_conn
    driver = getattr(dbapi_conn, "driver_connection", dbapi_conn)
    if isinstance(driver, psycopg.AsyncConnection):
        return _Blocking(driver)
    return driver


class _Result:
    def __init__(self, rows: list[Any]):
        self._rows = rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


class _Blocking:
    """An ``AsyncConnection`` seen through blocking calls (inside SQLAlchemy's greenlet)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.AsyncConnection[Any]):
        self._conn = conn

    @property
    def pgconn(self) -> Any:
        return self._conn.pgconn

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @property
    def broken(self) -> bool:
        return self._conn.broken

    @property
    def autocommit(self) -> bool:
        return self._conn.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        await_(self._conn.set_autocommit(value))

    def rollback(self) -> None:
        await_(self._conn.rollback())

    def execute(self, sql: Any) -> _Result:
        return await_(self._fetch(sql))

    async def _fetch(self, sql: Any) -> _Result:
        cursor = await self._conn.execute(sql)
        rows = await cursor.fetchall() if cursor.description is not None else []
        return _Result(rows)
