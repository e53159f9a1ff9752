"""What the asyncio API needs beyond its sync twin: cleanup that a cancellation cannot
cut (ending a transaction, returning a connection, giving back a lease granted to a
cancelled acquire), and schema operations in a worker thread.

Imported by the ``_async`` sources (the generated sync modules drop the import) and by
the SQLite engine's close hook (``persistence._engines``), which runs on both APIs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["drain", "give_back_if_cancelled", "in_background", "on_owner", "shielded"]

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

    Unlike ``asyncio.shield``, which runs the awaitable in a task of its own from the
    start (a task per unit of work, and two more turns of the event loop), it runs in
    the caller's task and moves to a task of its own only if the caller is cancelled:
    each future it waits for is waited for through a stand-in, so that the caller's
    cancellation cancels the stand-in and never the cleanup's own I/O.
    """
    result: T = await _Shielded(awaitable.__await__())
    return result


class _Shielded:
    __slots__ = ("_steps",)

    def __init__(self, steps: Generator[Any, None, Any]):
        self._steps = steps

    def __await__(self) -> Generator[Any, None, Any]:
        steps = self._steps
        try:
            waited = steps.send(None)
            while True:
                stand_in = None if waited is None else _stand_in(waited)
                try:
                    yield stand_in
                except asyncio.CancelledError:
                    if waited is None or not waited.cancelled():  # the caller's, not its own
                        _keep(asyncio.ensure_future(_Resumed(steps, waited)))
                        raise
                # (done: the cleanup's await reads its result, or raises its error)
                waited = steps.send(None)
        except StopIteration as done:
            return done.value


def _stand_in(waited: asyncio.Future[Any]) -> asyncio.Future[None]:
    """A future done when ``waited`` is, for the caller's task to wait on."""
    stand_in: asyncio.Future[None] = waited.get_loop().create_future()

    def done(_: object) -> None:
        if not stand_in.done():  # (cancelled: its caller was)
            stand_in.set_result(None)

    waited.add_done_callback(done)
    stand_in._asyncio_future_blocking = True  # (what ``await future`` sets)
    return stand_in


class _Resumed:
    """The rest of a shielded cleanup whose caller was cancelled, in a task of its own:
    ``waited`` first (the future it was waiting for), then its own awaits as they are."""

    __slots__ = ("_steps", "_waited")

    def __init__(self, steps: Generator[Any, None, Any], waited: asyncio.Future[Any] | None):
        self._steps, self._waited = steps, waited

    def __await__(self) -> Generator[Any, None, Any]:
        steps, waited = self._steps, self._waited
        try:
            while True:
                try:
                    yield waited
                except BaseException as exc:  # (handed to the cleanup itself)
                    if waited is None or not waited.done():
                        waited = steps.throw(exc)
                        continue
                waited = steps.send(None)
        except StopIteration as done:
            return done.value


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
        cleanup = _keep(asyncio.ensure_future(_give_back(task, give_back)))
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


def in_background(awaitable: Awaitable[object]) -> None:
    """Start ``awaitable`` (a cleanup nobody waits for) in a task of its own on the
    running loop; AsyncDatabase.close() waits for it, a failure is logged."""
    _keep(asyncio.ensure_future(awaitable))


def _keep(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """Hold ``task`` (a cleanup running on its own) until it ends, for drain()."""
    _PENDING.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _PENDING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("cleanup after a cancellation failed", exc_info=task.exception())


async def drain() -> None:
    """Wait for the cleanups still running after their callers were cancelled, those of
    the running event loop: another loop's (in another thread) cannot be awaited here,
    and are that loop's to finish."""
    loop = asyncio.get_running_loop()
    # list() copies the set at once: another loop's thread may add to it meanwhile
    while mine := [task for task in list(_PENDING) if task.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)


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
