"""Reload, merge and try again: rerun a function in a fresh unit of work when it loses
an optimistic-concurrency race (``VersionConflictError``), a bounded number of times,
with jittered exponential backoff (``retry.py``, the sync API, is generated from here).
"""

from __future__ import annotations

import asyncio  # sync: import time
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from persistence.errors import InvalidInputError, VersionConflictError

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase
    from persistence.uow_async import AsyncUnitOfWork

__all__ = ["retry_on_conflict"]

T = TypeVar("T")


async def retry_on_conflict(
    db: AsyncDatabase,
    tenant: str,
    fn: Callable[[AsyncUnitOfWork], Awaitable[T]],
    *,
    workspace: str = "default",
    attempts: int = 5,
    backoff: float = 0.01,
    max_backoff: float = 1.0,
) -> T:
    """``fn(uow)`` in a unit of work of ``tenant``/``workspace``, committed; when it
    raises ``VersionConflictError`` (its unit of work rolled back: nothing of it is
    kept), again in a fresh one, at most ``attempts`` times in all, sleeping a random
    time up to ``backoff * 2**(n - 1)`` (at most ``max_backoff``) seconds before the
    n-th retry. ``fn`` must read what it depends on inside its unit of work (it sees the
    winner's write on the next attempt). The last conflict is raised as it is; any
    other error at once. InvalidInputError for attempts below 1 or negative delays."""
    if type(attempts) is not int or attempts < 1:
        raise InvalidInputError(f"attempts must be an int of at least 1, not {attempts!r}")
    if not 0 <= backoff <= max_backoff:
        raise InvalidInputError("backoff and max_backoff must satisfy 0 <= backoff <= max_backoff")
    for attempt in range(1, attempts + 1):
        try:
            async with db.unit_of_work(tenant, workspace) as uow:
                return await fn(uow)
        except VersionConflictError:
            if attempt == attempts:
                raise
        delay = random.uniform(0, min(max_backoff, backoff * 2 ** (attempt - 1)))
        await asyncio.sleep(delay)  # sync: time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
