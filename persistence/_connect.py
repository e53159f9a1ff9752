"""Opening a unit of work: connection errors that name the fix, and one more try on
another connection when the pooled one turns out dead."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from persistence import _pool
from persistence.errors import DatabaseUnavailableError, translate

__all__ = ["begin", "reraise_translated"]

log = logging.getLogger(__name__)


class _Opened(Protocol):
    def finish(self, failed: bool) -> None: ...


TxT = TypeVar("TxT", bound=_Opened)
T = TypeVar("T")


def begin(
    open_tx: Callable[[], TxT],
    first: Callable[[TxT], T],
    *,
    url: Callable[[], str],
    engine: Engine,
    retry: bool = True,
) -> tuple[TxT, T]:
    """``open_tx()`` (check a connection out, start a transaction on it), then
    ``first(tx)``, the transaction's first statement; errors become PersistenceErrors
    that name the URL ``url()`` returns (``Settings.url_label``: called only to build an
    error, it parses the URL). Returns the transaction and what
    ``first`` returned; on an error the transaction is ended and the error raised.

    A pooled connection can be dead without the pool knowing: the server restarted, or
    an administrator terminated its backend. Its first statement then fails with
    DatabaseUnavailableError before anything of the caller's was sent, and nothing was
    committed, so the other connections pooled by ``engine`` are doubted (pinged at
    their next checkout, see ``_pool.doubt``) and both steps run once more, on another
    connection. A failure to connect is not retried: the pool has just tried.
    """
    try:
        tx = open_tx()
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, url()) from exc
    try:
        try:
            return tx, first(tx)
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc, url()) from exc
    except DatabaseUnavailableError as exc:
        tx.finish(failed=True)
        if not retry:
            raise
        cause = getattr(exc.__cause__, "orig", exc.__cause__)
        log.warning("a pooled database connection was dead (%s); entering on another", cause)
    except BaseException:
        tx.finish(failed=True)
        raise
    _pool.doubt(engine)
    return begin(open_tx, first, url=url, engine=engine, retry=False)


def reraise_translated(exc: BaseException | None, url: Callable[[], str]) -> None:
    """Raise a raw SQLAlchemy error that is leaving a unit of work's block as the
    PersistenceError it means (``raise ... from``); nothing for any other exception.

    A net under the statements, which translate their errors where they run: no driver
    error leaves a unit of work untranslated, whatever ran inside it."""
    if isinstance(exc, sa_exc.SQLAlchemyError):
        raise translate(exc, url()) from exc
