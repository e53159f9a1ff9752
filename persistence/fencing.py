"""Fencing tokens: a write under a lease is refused once a newer holder has written.

Each fenced write records, in the same transaction as the write, the highest fence seen
for its tenant and resource (the lease name) in the ``fences`` table. A lower fence, or
the same fence from another holder, raises :class:`StaleFenceError` and the transaction
writes nothing. Correctness rests on the database, not on the lock service.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import BigInteger, Connection, bindparam, func, select, union_all

from persistence._executor import Statement, run_one, run_scalar
from persistence.errors import InvalidInputError, InvalidTypeError, StaleFenceError
from persistence.models.base import utcnow
from persistence.models.leases import Fence, Lease
from persistence.repositories._base import Scope
from persistence.repositories._sql import upsert
from persistence.validation import validate_int, validate_lease_name, validate_text

__all__ = ["FenceToken", "Fenced", "as_fence_token", "check_fence", "fence_floor"]


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


_RECORD = _record_fence()


def check_fence(scope: Scope, fence: object | None) -> None:
    """Record ``fence`` for its resource, or raise StaleFenceError.

    Call it in the transaction of the write, before writing: the ``fences`` row stays
    locked until that transaction ends, so concurrent fenced writers serialize. Raises
    InvalidInputError when the lease belongs to another tenant.
    """
    if fence is None:
        return
    token = as_fence_token(fence)
    if token.tenant_id != scope.tenant_id:
        raise InvalidInputError("the lease belongs to another tenant than this unit of work")
    params = {
        "tenant_id": token.tenant_id,
        "resource": token.resource,
        "fence": token.fence,
        "holder": token.holder,
        "now": utcnow(),
    }
    if run_one(scope.connection, _RECORD, params) is None:
        raise StaleFenceError(
            f"stale fence {token.fence} for {token.resource!r}: a newer lease holder has "
            "written; nothing was written"
        )


def _floor_statement() -> Any:
    fences = select(Fence.fence).where(
        Fence.tenant_id == bindparam("tenant_id"), Fence.resource == bindparam("name")
    )
    leases = select(Lease.fence).where(
        Lease.tenant_id == bindparam("tenant_id"), Lease.name == bindparam("name")
    )
    both = union_all(fences, leases).subquery()
    return select(func.coalesce(func.max(both.c.fence), 0))


_FLOOR = Statement(_floor_statement(), "fences_floor")


def fence_floor(connection: Connection, tenant_id: uuid.UUID, name: str) -> int:
    """The highest fence the database knows for ``name`` (written or issued), else 0."""
    params = {"tenant_id": tenant_id, "name": name}
    return int(run_scalar(connection, _FLOOR, params))
