"""What the asyncio API needs beyond its sync twin: cleanup that a cancellation cannot cut.

Imported only by the ``_async`` sources (the generated sync modules drop the import).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["drain", "on_owner", "shielded"]

log = logging.getLogger(__name__)
T = TypeVar("T")
# Cleanups whose caller was cancelled, still running: kept referenced (the event loop
# holds only weak references to tasks) and awaited by AsyncDatabase.close().
_PENDING: set[asyncio.Task[Any]] = set()


async def shielded(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` (ending a transaction, returning a connection) to its end even
    if the calling task is cancelled meanwhile.

    The caller still sees its ``CancelledError`` at once; the cleanup goes on in its own
    task, so a cancelled unit of work never leaves its connection checked out or inside
    a transaction. A cleanup that fails after its caller left is logged.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            _PENDING.add(task)
            task.add_done_callback(_finished)
        raise


def _finished(task: asyncio.Task[Any]) -> None:
    _PENDING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("cleanup after a cancellation failed", exc_info=task.exception())


async def drain() -> None:
    """Wait for the cleanups still running after their callers were cancelled."""
    while _PENDING:
        await asyncio.gather(*list(_PENDING), return_exceptions=True)


async def on_owner(db: Any, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``operation(engine, ...)`` (a schema operation of ``persistence.migrations``:
    Alembic is synchronous) in a worker thread, on a sync owner engine of its own that is
    disposed of afterwards; ``db`` is the AsyncDatabase."""
    from persistence import _engines

    def work() -> T:
        engine = _engines.owner_engine(db._owner_url, db.settings)
        try:
            return operation(engine, *args, **kwargs)
        finally:
            engine.dispose()

    return await asyncio.to_thread(work)
