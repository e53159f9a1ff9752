"""Scope signing keys (administration, as the owner): add, list, retire.

The database keeps a key as its two HMAC pads (``persistence.scopes``); the secret is
shown once, when the key is added, for the services' ``scope_key`` setting.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.errors import AlreadyExistsError, NotFoundError
from persistence.models.base import utcnow
from persistence.models.tenancy import ScopeKey as ScopeKeyRow
from persistence.records import Record
from persistence.scopes import ScopeKey, new_key

__all__ = ["AUTO_KEY", "AsyncScopeKeyRepository", "ScopeKeyRecord"]

#: The key migration 0010 adds, which a Database with owner credentials and no
#: ``scope_key`` signs with (``own_key`` adds it again if it was deleted).
AUTO_KEY = "auto"


class ScopeKeyRecord(Record):
    """A scope key as listed: never its secret."""

    id: str
    created_at: datetime
    retired_at: datetime | None


class AsyncScopeKeyRepository:
    def __init__(self, session: AsyncSession):
        self._session = session

    async def add(self, kid: str | None = None, *, secret: ScopeKey | None = None) -> ScopeKey:
        """Add a key (a new random one, or ``secret``) named ``kid`` (default: ``k`` and
        the UTC time); returns it, secret included: the only time it is shown.
        AlreadyExistsError if the id is taken (retired keys keep theirs)."""
        kid = kid or (secret.id if secret else f"k{utcnow():%Y%m%d%H%M%S}")
        key = ScopeKey(kid, secret.secret) if secret else new_key(kid)
        if await self._session.get(ScopeKeyRow, kid) is not None:
            raise AlreadyExistsError(f"scope key {kid!r} already exists")
        inner, outer = key.pads()
        self._session.add(ScopeKeyRow(id=kid, inner_pad=inner, outer_pad=outer))
        await self._session.flush()
        return key

    async def list(self) -> list[ScopeKeyRecord]:
        """Every key, oldest first, retired ones included."""
        rows = await self._session.scalars(select(ScopeKeyRow).order_by(ScopeKeyRow.created_at))
        return [ScopeKeyRecord.model_validate(row, from_attributes=True) for row in rows]

    async def retire(self, kid: str) -> ScopeKeyRecord:
        """Retire ``kid``: every token it signed is refused from the commit on (units of
        work, access descriptors). NotFoundError for an unknown or already retired key."""
        result = await self._session.execute(
            update(ScopeKeyRow)
            .where(ScopeKeyRow.id == kid, ScopeKeyRow.retired_at.is_(None))
            .values(retired_at=utcnow())
            .returning(ScopeKeyRow)
        )
        row = result.scalar_one_or_none()
        if row is None:
            raise NotFoundError(f"no active scope key {kid!r}")
        return ScopeKeyRecord.model_validate(row, from_attributes=True)

    async def own_key(self) -> ScopeKey:
        """The key :data:`AUTO_KEY` a Database that can administer signs with when no
        ``scope_key`` is set, added on first use (its secret stays in the database)."""
        row = await self._session.get(ScopeKeyRow, AUTO_KEY)
        if row is None:
            return await self.add(AUTO_KEY)
        if row.retired_at is not None:
            raise NotFoundError(
                f"the scope key {AUTO_KEY!r} was retired: set scope_key (PERSISTENCE_SCOPE_KEY)"
            )
        return _from_pads(AUTO_KEY, bytes(row.inner_pad))


def _from_pads(kid: str, inner: bytes) -> ScopeKey:
    """The key whose inner pad is ``inner``: the key zero-padded to the block, XOR 0x36
    (HMAC pads a shorter key with zeros anyway, so it signs the same)."""
    return ScopeKey(kid, bytes(b ^ 0x36 for b in inner))
