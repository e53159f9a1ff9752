"""Opening a unit of work: ``BEGIN`` and the tenant entry in one round trip (PostgreSQL),
connection errors that name the fix, and one more try on another connection when the
pooled one turns out dead.

psycopg opens a transaction with its own ``BEGIN`` round trip before the first
statement (even in pipeline mode, where it syncs right after ``BEGIN``). Every unit of
work starts with ``BEGIN`` then ``persistence_enter()``, so :func:`enter` sends both
together in one libpq pipeline and leaves the explicit transaction open;
psycopg sees it open and sends no ``BEGIN`` of its own, and its ``commit()`` and
``rollback()`` act on the server's transaction status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence import _enter, _pool
from persistence._aio import in_background, shielded  # sync:
from persistence._compiled import Statement
from persistence._executor_async import (
    driver_of,
    raise_translated,
    run_entering,
    simple_query,
    sync_of,
)
from persistence._warm import WarmConnections, mark_parked
from persistence.errors import ConfigurationError, DatabaseUnavailableError, translate

__all__ = ["begin", "checkout", "enter", "enter_admin", "reraise_translated"]

log = logging.getLogger(__name__)


class _Opened(Protocol):
    async def finish(self, failed: bool) -> None: ...


TxT = TypeVar("TxT", bound=_Opened)
T = TypeVar("T")


async def checkout(engine: AsyncEngine, warm: WarmConnections[Any] | None) -> AsyncConnection:
    """A connection of ``engine`` (the runtime engine) for a tenant unit of work: one
    parked by the last unit of work to end (in ``warm``, its pool's: ``persistence._warm``)
    if one is fit to use, else one checked out of the pool. Parked connections found
    unfit on the way are checked in (the pool pings or replaces them at their next
    checkout)."""
    if warm is not None:
        connection, unfit = warm.take()
        if unfit:
            try:
                await shielded(_check_in(unfit))  # sync: _check_in(unfit)
            except BaseException:  # (cancelled meanwhile) the one taken goes back too
                if connection is not None:
                    in_background(connection.close())  # sync: connection.close()
                raise
        if connection is not None:
            return connection  # type: ignore[no-any-return]
    return await engine.connect()


async def _check_in(parked: list[tuple[AsyncConnection, float]]) -> None:
    for connection, parked_at in parked:
        mark_parked(sync_of(connection), parked_at)
        await connection.close()


async def enter(
    connection: AsyncConnection,
    entry: tuple[Statement, Mapping[str, Any]],
    *,
    read_only: bool = False,
) -> Mapping[str, Any] | None:
    """``BEGIN`` + the entry (``persistence_enter(token)``: ``entry``, its statement and
    parameters) in one round trip (a libpq pipeline,
    ``run_entering``); its row (values as text: the records built from it parse them
    when asked for), or None when the token names no tenant.

    The token goes as a parameter, never in the query text (which other sessions of the
    role may read in ``pg_stat_activity``). A driver error is translated by
    ``raise_translated``, and a broken connection is invalidated, not pooled.
    """
    driver: psycopg.AsyncConnection[Any] = driver_of(connection)
    if driver.pgconn.transaction_status == TransactionStatus.IDLE:
        begin_with = _enter.PIPELINED_BEGIN[read_only]
    else:  # (a transaction already open: not from our pool)
        begin_with = _enter.SET_READ_ONLY.removesuffix("; ").encode() if read_only else b""
    result, _ = await run_entering(connection, begin_with, entry, None, {})
    return _enter.EntryRow(result) if result.ntuples else None


async def enter_admin(connection: AsyncConnection, url: str) -> None:
    """``BEGIN`` an admin unit of work on ``connection`` and check, in the same round trip,
    that its role may administer: ConfigurationError naming ``url`` if not.

    psycopg would send ``BEGIN`` on its own before the first statement, in a round trip
    of its own: sent here instead, it costs nothing more, and a dead pooled connection
    shows before any statement of the caller's (:func:`begin` then tries another).
    """
    driver: psycopg.AsyncConnection[Any] = driver_of(connection)
    idle = driver.pgconn.transaction_status == TransactionStatus.IDLE
    query = _enter.BEGIN_ADMIN if idle else _enter.ADMIN_CHECK
    try:
        result = (await simple_query(driver, query.encode()))[-1]
    except psycopg.Error as exc:
        await raise_translated(connection, _enter.ADMIN_CHECK, (), exc)
    role = result.get_value(0, 0).decode() if result.ntuples else None
    may_administer = result.ntuples > 0 and result.get_value(0, 1) == b"t"
    if not may_administer:
        raise ConfigurationError(
            f"role {role!r} does not own the persistence tables, so it cannot administer "
            f"tenants (row-level security hides them from it): use the owner URL "
            f"(owner_database_url / PERSISTENCE_OWNER_DATABASE_URL) for db.admin(); "
            f"connected with {url}"
        )


async def begin(
    open_tx: Callable[[], Awaitable[TxT]],
    first: Callable[[TxT], Awaitable[T]],
    *,
    url: Callable[[], str],
    engine: AsyncEngine,
    retry: bool = True,
) -> tuple[TxT, T]:
    """``open_tx()`` (check a connection out, start a transaction on it), then
    ``first(tx)``, the transaction's first statement; errors become PersistenceErrors
    that name the URL ``url()`` returns (``Settings.url_label``: called only to build an
    error, it parses the URL). Returns the transaction and what ``first`` returned; on an
    error (or a cancellation) the transaction is ended and the error raised.

    A pooled connection can be dead without the pool knowing: the server restarted, or
    an administrator terminated its backend. Its first statement then fails with
    DatabaseUnavailableError before anything of the caller's was sent, and nothing was
    committed, so the other connections pooled by ``engine`` are doubted (pinged at
    their next checkout, see ``_pool.doubt``) and both steps run once more, on another
    connection. A failure to connect is not retried: the pool has just tried.
    """
    try:
        tx = await open_tx()
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, url()) from exc
    try:
        try:
            return tx, await first(tx)
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc, url()) from exc
    except DatabaseUnavailableError as exc:
        await shielded(tx.finish(failed=True))  # sync: tx.finish(failed=True)
        if not retry:
            raise
        cause = getattr(exc.__cause__, "orig", exc.__cause__)
        log.warning("a pooled database connection was dead (%s); entering on another", cause)
    except BaseException:
        await shielded(tx.finish(failed=True))  # sync: tx.finish(failed=True)
        raise
    _pool.doubt(engine.sync_engine)  # sync: _pool.doubt(engine)
    return await begin(open_tx, first, url=url, engine=engine, retry=False)


def reraise_translated(exc: BaseException | None, url: Callable[[], str]) -> None:
    """Raise a raw SQLAlchemy error that is leaving a unit of work's block as the
    PersistenceError it means (``raise ... from``); nothing for any other exception.

    A net under the statements, which translate their errors where they run: no driver
    error leaves a unit of work untranslated, whatever ran inside it."""
    if isinstance(exc, sa_exc.SQLAlchemyError):
        raise translate(exc, url()) from exc
