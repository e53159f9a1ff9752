"""What the asyncio lease acquire needs beyond its sync twin: a request cancelled in
flight must not keep what the server granted it.

Imported only by ``persistence/locks_async.py`` (the generated sync module drops it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["give_back_if_cancelled"]

log = logging.getLogger(__name__)
T = TypeVar("T")
# Give-backs whose caller was cancelled a second time, still running: kept referenced
# (the event loop holds only weak references to tasks) until they end.
_PENDING: set[asyncio.Task[Any]] = set()


async def give_back_if_cancelled(
    request: Awaitable[T], give_back: Callable[[T], Awaitable[object]]
) -> T:
    """Await ``request`` (a lease acquire); if the caller is cancelled meanwhile, let the
    request run to its answer, ``give_back`` what it was granted, then re-raise the
    ``CancelledError``.

    Cutting the request short is not safe: a command already sent (Redis ``SET NX``, the
    ``COMMIT`` of the SQL backend's row) may still be carried out by the server, with
    nobody left to learn that the lease was granted, and the lease would stay held
    until its ttl ran out. So the request runs in a task of its own that the caller's
    cancellation does not reach; the cancelled caller waits for its answer (one round
    trip, bounded by the socket and statement timeouts) and for the release of what it
    got. A second cancellation while it waits re-raises at once and leaves that cleanup
    running on its own; a release that fails is logged (that lease then expires).
    """
    task = asyncio.ensure_future(request)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cleanup = asyncio.ensure_future(_give_back(task, give_back))
        _PENDING.add(cleanup)
        cleanup.add_done_callback(_PENDING.discard)
        await asyncio.shield(cleanup)
        raise


async def _give_back(task: asyncio.Future[T], give_back: Callable[[T], Awaitable[object]]) -> None:
    try:
        granted = await task
    except (Exception, asyncio.CancelledError):
        return  # refused, failed or cancelled: nothing was granted
    try:
        await give_back(granted)
    except Exception:
        log.warning("a cancelled acquire could not give its lease back", exc_info=True)
