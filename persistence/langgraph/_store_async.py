"""What LangGraph's store does, once for sync and async: a batch of operations is one
unit of work of the store's tenant, run in order (a read sees the batch's earlier
writes); values are JSON text, checksummed, verified on every read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from persistence.codecs import checksum, dump_json
from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.langgraph import _store_sql as sql
from persistence.models.base import utcnow
from persistence.repositories._base_async import AsyncScope
from persistence.validation import count, validate_text

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase

__all__ = ["AsyncStoreCore", "NamespaceError", "sweep_expired"]

#: Expired items one sweep statement deletes: a sweep is bounded batches, never one
#: statement holding every expired row locked.
SWEEP_BATCH = 1000


class NamespaceError(InvalidInputError, InvalidNamespaceError):
    """A namespace LangGraph's store refuses: both ours and LangGraph's error."""


class AsyncStoreCore:
    def __init__(self, db: AsyncDatabase, tenant: str, *, refresh_on_read: bool):
        self._db = db
        self._tenant = tenant
        self.refresh_on_read = refresh_on_read

    async def batch(self, ops: Iterable[Op]) -> list[Result]:
        todo = list(ops)
        for op in todo:
            _validate(op)
        async with self._db.unit_of_work(self._tenant) as uow:
            run = _Batch(uow.scope, utcnow(), self.refresh_on_read)
            last = len(todo) - 1
            results = [await run.one(op, last=i == last) for i, op in enumerate(todo)]
        if run.untouched:  # read by the last statement, which committed with it
            async with self._db.unit_of_work(self._tenant) as uow:
                await _Batch(uow.scope, run.now, self.refresh_on_read).touch(run.untouched)
        return results

    async def sweep(self) -> int:
        """Delete the tenant's expired items, a transaction per batch; how many."""
        swept = 0
        while True:
            async with self._db.unit_of_work(self._tenant) as uow:
                gone = await _sweep_once(uow.scope, SWEEP_BATCH)
            swept += gone
            if gone < SWEEP_BATCH:
                return swept


async def _sweep_once(scope: AsyncScope, limit: int) -> int:
    scope.require_writable("sweep_ttl")
    params = {"tenant_id": scope.tenant_id, "now": utcnow()}
    return len(await scope.execute(sql.sweep(limit), params))


async def sweep_expired(scope: AsyncScope, batch_size: int) -> int:
    """Delete the expired items of the tenant of ``scope`` in its transaction, in batches
    of ``batch_size`` (``persistence gc``); how many."""
    swept = 0
    while True:
        gone = await _sweep_once(scope, batch_size)
        swept += gone
        if gone < batch_size:
            return swept


def _validate(op: Op) -> None:
    try:
        validate_op_namespace(op)
    except InvalidNamespaceError as exc:
        raise NamespaceError(str(exc)) from None
    if isinstance(op, (GetOp, PutOp)):
        if not op.namespace:
            raise NamespaceError("a namespace needs at least one label")
        validate_text(op.key, "store key", max_length=1024)
        _joined(op.namespace)
    if isinstance(op, PutOp) and op.namespace[0] == "langgraph":
        raise NamespaceError('the root label "langgraph" is reserved')


def _joined(namespace: Sequence[str]) -> str:
    text = ".".join(namespace)
    if len(text) > 1024:
        raise NamespaceError("a namespace may be at most 1024 characters, labels joined by '.'")
    return text


class _Batch:
    """The operations of one batch, in one transaction."""

    def __init__(self, scope: AsyncScope, now: datetime, refresh_on_read: bool):
        self._scope = scope
        self.now = now
        self._refresh_on_read = refresh_on_read
        self._base = {"tenant_id": scope.tenant_id, "now": now}
        # Items the last operation read whose TTL restarts, once its statement committed
        # the unit of work (``last``, PostgreSQL): the caller restarts them in another.
        self.untouched: list[Any] = []

    async def one(self, op: Op, *, last: bool = False) -> Result:
        """Run ``op``; ``last``: the batch's last operation, whose one statement carries
        the unit of work's COMMIT (``AsyncScope.run``)."""
        if isinstance(op, GetOp):
            return await self._get(op, last)
        if isinstance(op, PutOp):
            await self._put(op, last)
            return None
        if isinstance(op, SearchOp):
            return await self._search(op, last)
        if isinstance(op, ListNamespacesOp):
            return await self._namespaces(op, last)
        raise InvalidTypeError(f"unknown store operation {type(op).__name__}")

    def _refresh(self, flag: bool | None) -> bool:
        return self._refresh_on_read if flag is None else flag

    async def _get(self, op: GetOp, last: bool) -> Item | None:
        params = {**self._base, "namespace": _joined(op.namespace), "key": op.key}
        row = await self._scope.run_one(sql.GET, params, last=last)
        if row is None:
            return None
        if self._refresh(op.refresh_ttl):
            await self._touch_read([row])
        item: Item = _item(Item, row)
        return item

    async def _put(self, op: PutOp, last: bool) -> None:
        self._scope.require_writable("put")
        namespace = _joined(op.namespace)
        if op.value is None:
            keyed = {**self._base, "namespace": namespace, "key": op.key}
            await self._scope.run(sql.DELETE, keyed, last=last)
            return
        text = _value_text(op.value)
        ttl = _ttl_ms(op.ttl)
        params = {
            **self._base,
            "namespace": namespace,
            "key": op.key,
            "value": text,
            "checksum": checksum(text.encode()),
            "created_at": self.now,
            "updated_at": self.now,
            "expires_at": None if ttl is None else self.now + timedelta(milliseconds=ttl),
            "ttl_ms": ttl,
        }
        await self._scope.run(sql.PUT, params, last=last)

    async def _search(self, op: SearchOp, last: bool) -> list[SearchItem]:
        if op.query is not None:
            raise InvalidInputError(
                "search(query=...) is a vector search, which this store does not have "
                "(no index=): search with filter= instead"
            )
        limit = count(op.limit, "limit", minimum=0, maximum=10_000)
        offset = count(op.offset, "offset", minimum=0)
        prefix = ".".join(op.namespace_prefix)
        statement, params = sql.search(prefix, op.filter or {}, limit, offset, self._scope.dialect)
        rows = await self._scope.run(statement, {**self._base, **params}, last=last)
        if rows and self._refresh(op.refresh_ttl):
            await self._touch_read(rows)
        return [_item(SearchItem, row) for row in rows]

    async def _touch_read(self, rows: Sequence[Any]) -> None:
        if self._scope.transaction.committed:
            self.untouched += [row for row in rows if row.ttl_ms is not None]
        else:
            await self.touch(rows)

    async def touch(self, rows: Sequence[Any]) -> None:
        """Restart the TTL of the items read (those that have one)."""
        by_ttl: dict[int, list[tuple[str, str]]] = {}
        for row in rows:
            if row.ttl_ms is not None:
                by_ttl.setdefault(row.ttl_ms, []).append((row.namespace, row.key))
        for ttl, keys in by_ttl.items():
            expires_at = self.now + timedelta(milliseconds=ttl)
            await self._scope.execute(sql.refresh(self._scope.tenant_id, keys, ttl, expires_at))

    async def _namespaces(self, op: ListNamespacesOp, last: bool) -> list[tuple[str, ...]]:
        limit = count(op.limit, "limit", minimum=0, maximum=10_000)
        offset = count(op.offset, "offset", minimum=0)
        conditions = tuple(op.match_conditions or ())
        literal = _literal_prefix(conditions)
        statement, params = sql.namespaces(".".join(literal))
        rows = await self._scope.run(statement, {**self._base, **params}, last=last)
        found = {tuple(row.namespace.split(".")) for row in rows}
        matched = [ns for ns in found if all(_matches(c, ns) for c in conditions)]
        if op.max_depth is not None:
            depth = count(op.max_depth, "max_depth", minimum=1)
            matched = list({ns[:depth] for ns in matched})
        return sorted(matched)[offset : offset + limit]


def _literal_prefix(conditions: Sequence[MatchCondition]) -> tuple[str, ...]:
    """The labels every listed namespace starts with (a prefix condition's labels up to
    its first wildcard): what SQL can narrow by."""
    for condition in conditions:
        if condition.match_type == "prefix":
            labels = []
            for label in condition.path:
                if label == "*":
                    break
                labels.append(label)
            return tuple(labels)
    return ()


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise InvalidInputError(f"unknown match type {condition.match_type!r}: prefix or suffix")
    return all(p == "*" or n == p for n, p in pairs)


def _value_text(value: Any) -> str:
    if not isinstance(value, dict):
        raise InvalidTypeError(f"a store value must be a dict, not {type(value).__name__}")
    raw = dump_json(value, what="store value")
    if b"\\u0000" in raw:
        raise InvalidInputError("store value: a NUL character is not storable")
    return raw.decode()


def _ttl_ms(ttl: Any) -> int | None:
    """A TTL in minutes (LangGraph's unit) as whole milliseconds, at least one."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < 10**8:
        raise InvalidInputError(f"ttl must be a number of minutes > 0, not {ttl!r}")
    return max(1, round(ttl * 60_000))


def _item(kind: Any, row: Any) -> Any:
    if checksum(row.value.encode()) != row.checksum:
        raise DataCorruptionError(
            f"store item {row.key!r} of {row.namespace!r}: checksum mismatch, the stored "
            "value was altered"
        )
    return kind(
        namespace=tuple(row.namespace.split(".")),
        key=row.key,
        value=orjson.loads(row.value),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
