"""Fencing tokens: a write under a lease is refused once the lease has expired (on the
database's clock), was released or taken over, or a newer holder has written.

Each fenced write records, in the same transaction as the write, the highest fence seen
for its tenant and resource (the lease name) in the ``fences`` table. A lower fence, or
the same fence from another holder, a token past its ``expires_at``, or (SQL backend)
a lease row that is no longer this holder's live lease, raises :class:`StaleFenceError`
and the transaction writes nothing. Correctness rests on the database, not on the lock
service (docs/leases.md says which clock bounds what).
"""

from __future__ import annotations

from persistence._fences import FLOOR, RECORD, Fenced, FenceToken, as_fence_token
from persistence.errors import InvalidInputError, StaleFenceError
from persistence.models.base import utcnow
from persistence.repositories._base_async import AsyncScope

__all__ = ["FenceToken", "Fenced", "as_fence_token", "check_fence", "fence_floor"]


async def check_fence(scope: AsyncScope, fence: object | None) -> None:
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
        "expires_at": token.expires_at,
    }
    if await scope.run_one(RECORD[scope.dialect], params) is None:
        raise StaleFenceError(
            f"stale fence {token.fence} for {token.resource!r}: the lease expired, was "
            "released or taken over, or a newer holder has written; nothing was written"
        )


async def fence_floor(scope: AsyncScope, name: str, *, last: bool = False) -> int:
    """The highest fence the database knows for ``name`` (written or issued) in the
    tenant of ``scope``, else 0; ``last``: the unit of work's last statement (it carries
    the COMMIT, ``AsyncScope.run``)."""
    params = {"tenant_id": scope.tenant_id, "name": name}
    return int(await scope.run_scalar(FLOOR, params, last=last))
