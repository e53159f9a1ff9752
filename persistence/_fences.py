"""What the sync and async fencing modules share: the fence token, its checks and the
statements that record and read fences (each defined, and compiled, once).

Import these from :mod:`persistence.fencing` (or ``persistence.fencing_async``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy import BigInteger, bindparam, func, select, union_all

from persistence._compiled import Statement
from persistence.errors import InvalidTypeError
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
    return token


def _record_fence() -> Statement:
    """Record a fence for its resource unless a newer one (or the same one from another
    holder) is recorded; returns the fence, no row when refused."""
    table = Fence.__table__
    stmt = upsert(table).values(
        tenant_id=bindparam("tenant_id"),
        resource=bindparam("resource"),
        fence=bindparam("fence", type_=BigInteger()),
        holder=bindparam("holder"),
        updated_at=bindparam("now"),
    )
    current = table.c
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
    return Statement(stmt, "fences_record")


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


RECORD = _record_fence()
FLOOR = _floor_statement()
