"""Leases: named, expiring locks with fencing tokens, on Redis or on the database.

``db.lease(tenant=..., name=..., ttl=30, wait=0)`` acquires at once and returns a
:class:`Lease` (also a context manager that releases on exit). Its ``fence`` grows
strictly per tenant and name; pass the lease to fenced writes so that a holder whose
lease expired cannot overwrite a newer holder's data (see docs/leases.md).

On the asyncio API ``db.lease(...)`` returns an :class:`AsyncLease` not yet acquired:
awaiting it (``lease = await db.lease(...)``) or entering it (``async with db.lease(...)
as lease:``) acquires it, once. A cancelled acquire leaves no lease behind (see
:meth:`AsyncLease._request`).
"""

from __future__ import annotations

import asyncio  # sync:
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Generator
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from persistence._aio import give_back_if_cancelled, shielded  # sync:
from persistence._lease_redis_async import (
    FENCE_COUNTER_RETENTION_MS,
    AsyncRedisLeaseBackend,
    unreachable,
)
from persistence.errors import (
    ConfigurationError,
    LeaseLostError,
    LockNotAcquiredError,
)
from persistence.fencing_async import FenceToken
from persistence.models.base import utcnow
from persistence.records import LeaseRecord
from persistence.repositories.leases_async import AsyncLeaseRepository
from persistence.validation import validate_lease_name, validate_seconds

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase

__all__ = [
    "FENCE_COUNTER_RETENTION_MS",
    "AsyncLease",
    "AsyncLeaseBackend",
    "list_leases",
    "make_backend",
    "unreachable",
    "validate_lease_name",
]

_MAX_TTL = 7 * 24 * 3600.0  # seconds


def _seconds(value: object, what: str, *, zero: bool) -> float:
    return validate_seconds(value, what, maximum=_MAX_TTL, allow_zero=zero)


class AsyncLeaseBackend(Protocol):
    """Where leases live. Each call is atomic on the backend."""

    async def acquire(
        self, tenant: str, name: str, token: str, ttl: float
    ) -> tuple[uuid.UUID, int]:
        """Take the lease if free: return (tenant id, fence); LockNotAcquiredError if held
        or if the lock service cannot be reached."""
        ...

    async def extend(
        self, tenant: str, tenant_id: uuid.UUID, name: str, token: str, ttl: float
    ) -> bool:
        """Reset the expiry if ``token`` still holds the lease; False otherwise."""
        ...

    async def release(self, tenant: str, tenant_id: uuid.UUID, name: str, token: str) -> bool:
        """Free the lease if ``token`` still holds it; False otherwise."""
        ...

    async def list(self, tenant: str) -> list[LeaseRecord]:
        """Leases of the tenant held now, by name."""
        ...

    async def close(self) -> None:
        """Release what the backend holds of its own (the database closes)."""
        ...


def make_backend(db: AsyncDatabase) -> AsyncLeaseBackend:
    """Redis when configured (``lease_backend='auto'`` needs PostgreSQL and a Redis URL),
    else the database."""
    choice = db.settings.lease_backend
    if choice == "redis" and not db.settings.redis_url:
        raise ConfigurationError("lease_backend='redis' needs redis_url")
    if choice == "redis" or (
        choice == "auto" and db.settings.redis_url and db.dialect == "postgresql"
    ):
        return AsyncRedisLeaseBackend(db)
    return AsyncSqlLeaseBackend(db)


async def list_leases(db: AsyncDatabase, tenant: str) -> list[LeaseRecord]:
    """The leases ``tenant`` holds now (name, holder, fence, remaining seconds)."""
    return await db._lease_backend().list(tenant)


def _new_token() -> str:
    return f"{socket.gethostname()[:80]}/{os.getpid()}/{uuid.uuid4().hex}"


class AsyncLease:
    """A held lease. Use it as a context manager or call :meth:`release`.

    ``fence`` is the fencing token: strictly greater than every fence issued before
    for this tenant and name. ``held`` and ``remaining`` are this process's view,
    counted from just before the acquire request; :meth:`extend` asks the backend.
    On the asyncio API the lease is acquired when first awaited or entered.
    """

    tenant_id: uuid.UUID
    fence = 0  # until acquired (fences start at 1)
    _expires = 0.0
    _expires_at: datetime | None = None  # the same moment on the wall clock, for fences

    def __init__(
        self, backend: AsyncLeaseBackend, tenant: str, name: str, ttl: float, wait: float
    ) -> None:
        self.name = validate_lease_name(name)
        self.ttl = _seconds(ttl, "ttl", zero=False)
        wait = _seconds(wait, "wait", zero=True)
        self.tenant = tenant
        self.token = _new_token()
        self._backend = backend
        self._released = False
        self._lost = False
        self._wait = wait  # sync: self.tenant_id, self.fence, self._expires = self._acquire(wait)

    def __await__(self) -> Generator[Any, None, Self]:  # sync:
        return self.__aenter__().__await__()  # sync:

    async def _acquire(self, wait: float) -> tuple[uuid.UUID, int, float]:
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            started, wall = _now()
            try:
                tenant_id, fence = await self._request()
                self._expires_at = wall + timedelta(seconds=self.ttl)
                return tenant_id, fence, started + self.ttl
            except LockNotAcquiredError as exc:
                if getattr(exc, "unreachable", False) or time.monotonic() >= deadline:
                    raise
            pause = max(0.0, min(delay, deadline - time.monotonic()))
            await asyncio.sleep(pause)  # sync: time.sleep(pause)
            delay = min(delay * 2, 0.2)

    async def _request(self) -> tuple[uuid.UUID, int]:
        """One acquire request to the backend. On the asyncio API a cancellation that
        arrives while it is in flight waits for its answer and releases what it was
        granted before the ``CancelledError`` goes on: see
        :func:`persistence._aio.give_back_if_cancelled`."""
        request = self._backend.acquire(self.tenant, self.name, self.token, self.ttl)
        return await give_back_if_cancelled(request, self._give_back)  # sync: return request

    async def _give_back(self, granted: tuple[uuid.UUID, int]) -> None:  # sync:
        await self._backend.release(self.tenant, granted[0], self.name, self.token)  # sync:

    def _require_acquired(self) -> None:  # sync:
        if not self.fence:  # sync:
            message = f"lease {self.name!r} is not acquired: await it or use `async with`"  # sync:
            raise LockNotAcquiredError(message)  # sync:

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} fence={self.fence} held={self.held}>"

    @property
    def fence_token(self) -> FenceToken:
        """What a fenced write carries (see :mod:`persistence.fencing`): its fence, and
        when the lease ends (now, once released or lost), as this process knows it."""
        self._require_acquired()  # sync:
        expires_at = self._expires_at
        if self._released or self._lost:
            expires_at = min(utcnow(), expires_at) if expires_at else utcnow()
        return FenceToken(self.tenant_id, self.name, self.fence, self.token, expires_at)

    @property
    def remaining(self) -> float:
        """Seconds left before the lease expires (0 once released or lost)."""
        if self._released or self._lost:
            return 0.0
        return max(0.0, self._expires - time.monotonic())

    @property
    def held(self) -> bool:
        return self.remaining > 0

    async def extend(self, ttl: float | None = None) -> None:
        """Reset the expiry to ``ttl`` (default: the acquire ttl) seconds from now.

        Raises LeaseLostError if the lease expired, was taken over or released.
        """
        ttl = self.ttl if ttl is None else _seconds(ttl, "ttl", zero=False)
        self._require_acquired()  # sync:
        if self._released or self._lost:
            raise LeaseLostError(f"lease {self.name!r} is no longer held")
        started, wall = _now()
        if not await self._backend.extend(self.tenant, self.tenant_id, self.name, self.token, ttl):
            self._lost = True
            raise LeaseLostError(f"lease {self.name!r} was lost (expired or taken over)")
        self._expires, self._expires_at = started + ttl, wall + timedelta(seconds=ttl)

    async def release(self) -> None:
        """Give the lease up. A second call does nothing.

        Raises LeaseLostError if it had already expired or been taken over: the work
        done under it may not have been exclusive.
        """
        if self._released:
            return
        self._require_acquired()  # sync:
        if self._lost:
            raise LeaseLostError(f"lease {self.name!r} was lost before it was released")
        request = self._backend.release(self.tenant, self.tenant_id, self.name, self.token)
        ok = await shielded(request)  # sync: ok = request
        self._released = True
        if not ok:
            self._lost = True
            raise LeaseLostError(f"lease {self.name!r} expired or was taken over before release")

    async def __aenter__(self) -> Self:
        if not self.fence:  # sync:
            self.tenant_id, self.fence, self._expires = await self._acquire(self._wait)  # sync:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.release()
            return
        # an exception is already on its way: don't hide it behind LeaseLostError
        with contextlib.suppress(LeaseLostError):
            await self.release()


def _now() -> tuple[float, datetime]:
    """Now on the monotonic clock and on the wall clock: an acquire or extend request
    counts its ttl from just before it is sent."""
    return time.monotonic(), utcnow()


class AsyncSqlLeaseBackend:
    """Leases in the ``leases`` table: one short transaction per call."""

    def __init__(self, db: AsyncDatabase):
        self._db = db

    async def acquire(
        self, tenant: str, name: str, token: str, ttl: float
    ) -> tuple[uuid.UUID, int]:
        async with self._db.unit_of_work(tenant) as uow:
            fence = await AsyncLeaseRepository(uow.scope).acquire(name, token, ttl)
            tenant_id = uow.scope.tenant_id
        if fence is None:
            raise LockNotAcquiredError(f"lease {name!r} is held by another holder")
        return tenant_id, fence

    async def extend(
        self, tenant: str, tenant_id: uuid.UUID, name: str, token: str, ttl: float
    ) -> bool:
        async with self._db.unit_of_work(tenant) as uow:
            return await AsyncLeaseRepository(uow.scope).extend(name, token, ttl)

    async def release(self, tenant: str, tenant_id: uuid.UUID, name: str, token: str) -> bool:
        async with self._db.unit_of_work(tenant) as uow:
            return await AsyncLeaseRepository(uow.scope).release(name, token)

    async def list(self, tenant: str) -> list[LeaseRecord]:
        async with self._db.unit_of_work(tenant) as uow:
            return await AsyncLeaseRepository(uow.scope).held()

    async def close(self) -> None:
        pass
