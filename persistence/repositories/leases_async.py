"""Leases of the SQL lock backend (one row per tenant and name, kept for its fence)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Interval, Table, func, literal, select, update

from persistence.fencing_async import fence_floor
from persistence.models.base import UTCDateTime, utcnow
from persistence.models.leases import Lease
from persistence.records import LeaseRecord
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._sql import upsert

__all__ = ["AsyncLeaseRepository"]

_leases = cast(Table, Lease.__table__)


class AsyncLeaseRepository:
    """Acquire, extend, release and list leases of the scope's tenant.

    Time is the database's clock on PostgreSQL (every machine agrees on expiry), the
    local clock on SQLite (one machine). Nothing here commits.
    """

    def __init__(self, scope: AsyncScope):
        self._scope = scope
        self._pg = scope.is_postgres

    def _now(self) -> Any:
        if self._pg:
            return func.statement_timestamp(type_=UTCDateTime())
        return literal(utcnow(), UTCDateTime())

    def _later(self, ttl: float) -> Any:
        if self._pg:
            interval = literal(timedelta(seconds=ttl), Interval())
            return func.statement_timestamp(type_=UTCDateTime()) + interval
        return literal(utcnow() + timedelta(seconds=ttl), UTCDateTime())

    def _mine(self, name: str, token: str) -> ColumnElement[bool]:
        c = _leases.c
        return cast(
            ColumnElement[bool],
            (c.tenant_id == self._scope.tenant_id)
            & (c.name == name)
            & (c.holder == token)
            & (c.expires_at > self._now()),
        )

    async def acquire(self, name: str, token: str, ttl: float) -> int | None:
        """Take the lease if it is free or expired; return the new fence, else None.

        The fence is above the row's last fence and above every fence recorded by a
        fenced write (so switching from Redis to this backend keeps fences growing).
        """
        c = _leases.c
        floor = await fence_floor(self._scope, name)
        stmt = upsert(_leases).values(
            tenant_id=self._scope.tenant_id,
            name=name,
            holder=token,
            fence=floor + 1,
            acquired_at=self._now(),
            expires_at=self._later(ttl),
        )
        greatest = func.greatest if self._pg else func.max  # SQLite's two-argument max()
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.tenant_id, c.name],
            set_={
                "holder": stmt.excluded.holder,
                # the row is locked here: its fence is the latest even if floor is not
                "fence": greatest(c.fence + 1, stmt.excluded.fence),
                "acquired_at": stmt.excluded.acquired_at,
                "expires_at": stmt.excluded.expires_at,
            },
            where=c.holder.is_(None) | (c.expires_at <= self._now()),
        ).returning(c.fence)
        rows = await self._scope.execute(stmt)
        return int(rows[0].fence) if rows else None

    async def extend(self, name: str, token: str, ttl: float) -> bool:
        stmt = (
            update(_leases)
            .where(self._mine(name, token))
            .values(expires_at=self._later(ttl))
            .returning(_leases.c.fence)
        )
        return bool(await self._scope.execute(stmt))

    async def release(self, name: str, token: str) -> bool:
        stmt = (
            update(_leases)
            .where(self._mine(name, token))
            .values(holder=None, acquired_at=None, expires_at=None)
            .returning(_leases.c.fence)
        )
        return bool(await self._scope.execute(stmt))

    async def held(self) -> list[LeaseRecord]:
        """Leases held now, by name."""
        c = _leases.c
        now = utcnow()
        rows = await self._scope.execute(
            select(c.name, c.holder, c.fence, c.expires_at)
            .where(
                c.tenant_id == self._scope.tenant_id,
                c.holder.is_not(None),
                c.expires_at > self._now(),
            )
            .order_by(c.name),
        )
        return [
            LeaseRecord.model_construct(
                tenant_id=self._scope.tenant_id,
                name=r.name,
                holder=r.holder,
                fence=int(r.fence),
                expires_at=r.expires_at,
                remaining=max(0.0, (r.expires_at - now).total_seconds()),
            )
            for r in rows
        ]
