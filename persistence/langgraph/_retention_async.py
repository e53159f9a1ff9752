"""A tenant's retention of LangGraph checkpoints (``lg_retention``) and its application
to one workspace, in bounded batches: what ``persistence gc`` runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select

from persistence.errors import InvalidInputError
from persistence.langgraph import _maintenance as maintenance
from persistence.langgraph._checkpoints_async import AsyncCheckpointRepository
from persistence.langgraph._pruning import keep_set
from persistence.models.base import utcnow
from persistence.models.langgraph import LgRetention
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._sql import upsert
from persistence.validation import count

__all__ = ["Retention", "apply_retention", "clear_retention", "get_retention", "set_retention"]

_RETENTION = cast(Table, LgRetention.__table__)
#: Most checkpoints a tenant may keep per thread namespace by policy (a bound, not a goal).
MAX_KEEP = 1_000_000


@dataclass(frozen=True, slots=True)
class Retention:
    """Keep the last ``keep_last`` checkpoints per thread namespace; drop threads idle
    (not written) for longer than ``idle``. None: no such limit."""

    keep_last: int | None = None
    idle: timedelta | None = None


async def get_retention(scope: AsyncScope) -> Retention:
    r = _RETENTION.c
    rows = await scope.execute(
        select(r.keep_last, r.idle_seconds).where(r.tenant_id == scope.tenant_id)
    )
    if not rows:
        return Retention()
    keep, idle = rows[0]
    return Retention(keep, None if idle is None else timedelta(seconds=idle))


async def set_retention(
    scope: AsyncScope, *, keep_last: int | None, idle: timedelta | None
) -> Retention:
    """Set the tenant's policy (both None: none)."""
    scope.require_writable("set_retention")
    keep = None
    if keep_last is not None:
        keep = count(keep_last, "keep_last", minimum=1, maximum=MAX_KEEP)
    seconds = None
    if idle is not None:
        if not isinstance(idle, timedelta) or idle.total_seconds() < 1:
            raise InvalidInputError("idle must be a timedelta of at least one second")
        seconds = int(idle.total_seconds())
    values = {"keep_last": keep, "idle_seconds": seconds, "updated_at": utcnow()}
    insert = upsert(_RETENTION).values(tenant_id=scope.tenant_id, **values)
    await scope.execute(
        insert.on_conflict_do_update(index_elements=[_RETENTION.c.tenant_id], set_=values)
    )
    return Retention(keep, None if seconds is None else timedelta(seconds=seconds))


async def clear_retention(scope: AsyncScope) -> None:
    scope.require_writable("clear_retention")
    await scope.execute(delete(_RETENTION).where(_RETENTION.c.tenant_id == scope.tenant_id))


async def apply_retention(scope: AsyncScope, batch_size: int) -> int:
    """Apply the tenant's policy to the workspace of ``scope``: idle threads first, then
    each crowded namespace down to ``keep_last`` (delta channels' ancestors kept), in
    batches of ``batch_size`` threads or namespaces; how many checkpoints were deleted."""
    policy = await get_retention(scope)
    repo = AsyncCheckpointRepository(scope)
    deleted = 0
    if policy.idle is not None:
        before = utcnow() - policy.idle
        while True:
            query = maintenance.idle_threads(batch_size)
            rows = await scope.execute(query, _params(scope, before=before))
            threads = [r.thread_id for r in rows]
            if not threads:
                break
            deleted += await repo.count_checkpoints(threads)
            await repo.delete_threads(threads)
    if policy.keep_last is not None:
        deleted += await _trim(scope, repo, policy.keep_last, batch_size)
    return deleted


async def _trim(
    scope: AsyncScope, repo: AsyncCheckpointRepository, keep_last: int, batch_size: int
) -> int:
    deleted, after = 0, ("", "")
    while True:
        params = _params(scope, keep_last=keep_last, after_thread=after[0], after_ns=after[1])
        rows = await scope.execute(maintenance.crowded(batch_size), params)
        pairs = [(r.thread_id, r.checkpoint_ns) for r in rows]
        if not pairs:
            return deleted
        for thread, ns in pairs:
            chain = await repo.chain(thread, ns)
            keep = keep_set(chain, keep_last)
            doomed = [row.checkpoint_id for row in chain.rows if row.checkpoint_id not in keep]
            await repo.delete_checkpoints(thread, ns, doomed)
            deleted += len(doomed)
        after = pairs[-1]


def _params(scope: AsyncScope, **more: Any) -> dict[str, Any]:
    return {"tenant_id": scope.tenant_id, "workspace_id": scope.workspace_id, **more}
