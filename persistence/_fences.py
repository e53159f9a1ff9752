"""What the sync and async fencing modules share: the fence token, its checks and the
statements that record and read fences (each defined, and compiled, once).

Import these from :mod:`persistence.fencing` (or ``persistence.fencing_async``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import (
    BigInteger,
    Uuid,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)

from persistence._compiled import Statement
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.base import UTCDateTime
from persistence.models.leases import Fence, Lease
from persistence.repositories._sql import upsert
from persistence.validation import validate_int, validate_lease_name, validate_text

__all__ = ["FLOOR", "RECORD", "FenceToken", "Fenced", "as_fence_token"]


@dataclass(frozen=True, slots=True)
class FenceToken:
    """What a fenced write carries: whose lease, on what, with which fence."""

    tenant_id: uuid.UUID
    resource: str
    fence: int
    holder: str
    expires_at: datetime | None = None
    """When the lease ends (UTC; a lease's is counted from just before its acquire or
    extend request, so never later than the lock service's): a write after it is
    refused. None: no expiry is checked (a token built by hand)."""


@runtime_checkable
class Fenced(Protocol):
    """Anything that can hand out a fence token (a held :class:`persistence.locks.Lease`)."""

    @property
    def fence_token(self) -> FenceToken: ...


def as_fence_token(value: object) -> FenceToken:
    """Return the token of a lease (or the token itself), its fields checked to fit the
    ``fences`` table (a 64-bit fence, a lease name, a holder of at most 200 characters);
    InvalidTypeError for anything else."""
    if isinstance(value, FenceToken):
        token = value
    elif isinstance(value, Fenced):
        token = value.fence_token
    else:
        raise InvalidTypeError(f"fence must be a Lease or FenceToken, not {type(value).__name__}")
    if not isinstance(token.tenant_id, uuid.UUID):
        raise InvalidTypeError("a fence token's tenant_id must be a UUID")
    validate_lease_name(token.resource)
    validate_int(token.fence, "fence", minimum=1)
    validate_text(token.holder, "fence holder", max_length=200)
    expires_at = token.expires_at
    if expires_at is not None:
        if not isinstance(expires_at, datetime):
            raise InvalidTypeError("a fence token's expires_at must be a datetime or None")
        if expires_at.tzinfo is None:
            raise InvalidInputError("a fence token's expires_at must be timezone-aware")
    return token


def _record_fence(dialect: str) -> Statement:
    """Record a fence for its resource unless the write may not go through; returns the
    fence, no row when refused. Refused: a newer fence (or the same one from another
    holder) recorded; the token's ``expires_at`` passed, on the database's clock
    (PostgreSQL's ``clock_timestamp()`` as the statement runs; SQLite's is this process's,
    ``:now``); or, for a lease of the SQL backend, its row no longer this holder's live
    lease (taken over, released or expired), whether or not the new holder wrote yet."""
    table, leases = Fence.__table__, Lease.__table__
    written_at = bindparam("now", type_=UTCDateTime())  # (this process's clock)
    now: Any = func.clock_timestamp() if dialect == "postgresql" else written_at
    expires_at = bindparam("expires_at", type_=UTCDateTime())
    tenant_id: Any = bindparam("tenant_id", type_=Uuid())
    resource: Any = bindparam("resource")
    fence: Any = bindparam("fence", type_=BigInteger())
    holder: Any = bindparam("holder")
    lease = leases.c
    superseded = exists(
        select(literal(1)).where(
            lease.tenant_id == tenant_id,
            lease.name == resource,
            or_(
                lease.fence > fence,
                and_(
                    lease.fence == fence,
                    or_(lease.holder.is_(None), lease.holder != holder, lease.expires_at <= now),
                ),
            ),
        )
    )
    live = or_(expires_at.is_(None), expires_at > now)
    row = select(tenant_id, resource, fence, holder, written_at).where(live, ~superseded)
    current = table.c
    columns = ["tenant_id", "resource", "fence", "holder", "updated_at"]
    stmt = upsert(table).from_select(columns, row)
    stmt = stmt.on_conflict_do_update(
        index_elements=[current.tenant_id, current.resource],
        set_={
            "fence": stmt.excluded.fence,
            "holder": stmt.excluded.holder,
            "updated_at": stmt.excluded.updated_at,
        },
        where=(current.fence < stmt.excluded.fence)
        | ((current.fence == stmt.excluded.fence) & (current.holder == stmt.excluded.holder)),
    ).returning(current.fence)
    return Statement(stmt, f"fences_record_{dialect}")


def _floor_statement() -> Statement:
    """The highest fence known for a lease name: written (``fences``) or issued (``leases``)."""
    fences = select(Fence.fence).where(
        Fence.tenant_id == bindparam("tenant_id"), Fence.resource == bindparam("name")
    )
    leases = select(Lease.fence).where(
        Lease.tenant_id == bindparam("tenant_id"), Lease.name == bindparam("name")
    )
    both = union_all(fences, leases).subquery()
    return Statement(select(func.coalesce(func.max(both.c.fence), 0)), "fences_floor")


RECORD = {dialect: _record_fence(dialect) for dialect in ("postgresql", "sqlite")}
FLOOR = _floor_statement()
