"""The asyncio lease: acquired when awaited or entered, and a cancelled acquire gives back
what the backend granted it (a fake backend whose grant takes a while)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest

from persistence.errors import LockNotAcquiredError
from persistence.locks_async import AsyncLease

TENANT_ID = uuid.uuid4()


class SlowBackend:
    """Grants after ``delay`` seconds (or refuses: ``free=False``); records releases."""

    def __init__(self, delay: float = 0.05, *, free: bool = True) -> None:
        self.delay = delay
        self.free = free
        self.fence = 0
        self.holder: str | None = None
        self.released: list[str] = []

    async def acquire(self, tenant: str, name: str, token: str, ttl: float) -> Any:
        await asyncio.sleep(self.delay)
        if not self.free or self.holder is not None:
            raise LockNotAcquiredError(f"lease {name!r} is held by another holder")
        self.fence += 1
        self.holder = token
        return TENANT_ID, self.fence

    async def extend(self, *args: Any) -> bool:
        return True

    async def release(self, tenant: str, tenant_id: uuid.UUID, name: str, token: str) -> bool:
        await asyncio.sleep(0.01)
        self.released.append(token)
        if self.holder != token:
            return False
        self.holder = None
        return True

    async def list(self, tenant: str) -> list[Any]:
        return []


def _lease(backend: SlowBackend, wait: float = 0) -> AsyncLease:
    return AsyncLease(backend, "acme", "job", ttl=30, wait=wait)  # type: ignore[arg-type]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def test_a_lease_is_acquired_once_when_awaited_or_entered() -> None:
    async def scenario() -> None:
        backend = SlowBackend(0)
        lease = _lease(backend)
        assert (lease.fence, lease.held) == (0, False)
        assert "fence=0" in repr(lease)
        with pytest.raises(LockNotAcquiredError, match="await it"):
            lease.fence_token  # noqa: B018
        assert await lease is lease
        async with lease as entered:  # already acquired: not acquired again
            assert entered is lease and lease.held and lease.fence == backend.fence == 1
        assert not lease.held and backend.holder is None
        async with _lease(backend) as second:
            assert second.fence == 2 and second.fence_token.fence == 2
        assert backend.released == [lease.token, second.token]

    _run(scenario())


def test_a_cancelled_acquire_gives_back_what_was_granted() -> None:
    async def scenario() -> None:
        backend = SlowBackend(0.05)
        lease = _lease(backend)
        task = asyncio.create_task(lease.__aenter__())
        await asyncio.sleep(0.01)  # the grant is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # granted after the cancellation, and given back before CancelledError was seen
        assert backend.fence == 1 and backend.holder is None
        assert backend.released == [lease.token]

    _run(scenario())


def test_an_acquire_timed_out_by_asyncio_timeout_leaves_no_lease() -> None:
    async def scenario() -> None:
        backend = SlowBackend(0.05)
        lease = _lease(backend)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await lease
        assert backend.holder is None and backend.released == [lease.token]
        assert not lease.held

    _run(scenario())


def test_an_acquire_cancelled_while_waiting_for_a_held_lease_releases_nothing() -> None:
    async def scenario() -> None:
        backend = SlowBackend(0.001, free=False)
        task = asyncio.create_task(_lease(backend, wait=5).__aenter__())
        await asyncio.sleep(0.1)  # refused a few times, waiting between attempts
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert backend.released == [] and backend.holder is None

    _run(scenario())


def test_a_second_cancellation_leaves_the_give_back_running() -> None:
    async def scenario() -> None:
        backend = SlowBackend(0.05)
        lease = _lease(backend)
        task = asyncio.create_task(lease.__aenter__())
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)  # waiting for the grant it is to give back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        assert backend.holder is None and backend.released == [lease.token]

    _run(scenario())
