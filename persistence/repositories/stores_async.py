"""Stores and their items, inside the transaction of the scope they are given."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, select

from persistence._cache_front_async import AsyncReadCache
from persistence._cursor import cursor_key, encode_cursor
from persistence.cache import Entry
from persistence.codecs import encode
from persistence.errors import DataCorruptionError, NotFoundError
from persistence.models.base import utcnow
from persistence.records import Page, StoreRecord
from persistence.repositories import _cached as cached
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._store_statements import (
    CLEAR,
    CONTAINS,
    COUNT,
    ENSURE,
    GET,
    LOCK,
    MISSING,
    PUT,
    PUT_ENSURING,
    REMOVE,
    STORES,
    decoded,
    dialect_statements,
    key_hash,
)
from persistence.validation import count, validate_slug

__all__ = ["MISSING", "AsyncStoreRepository", "key_hash"]


class AsyncStoreRepository:
    """Stores of one workspace. Item methods take the store name and raw JSON bytes
    already validated by :mod:`persistence.stores`; nothing here commits."""

    def __init__(self, scope: AsyncScope, known: set[str] | None = None):
        self._scope = scope
        # names whose row this transaction has locked, so exists until it ends
        self._known = known if known is not None else set()

    @property
    def scope(self) -> AsyncScope:
        return self._scope

    async def _run(self, clause: Any, params: dict[str, Any] | None = None) -> list[Any]:
        return await self._scope.execute(clause, params)

    # -- stores ----------------------------------------------------------------------

    def _store_where(self, name: str) -> ColumnElement[bool]:
        c = STORES.c
        return (
            (c.tenant_id == self._scope.tenant_id)
            & (c.workspace_id == self._scope.workspace_id)
            & (c.name == name)
        )

    async def ensure(self, name: str) -> None:
        """Create the store row if it is missing (items reference it), without waiting on
        a store row another transaction holds locked (see ``ENSURE``)."""
        if name in self._known:
            return
        scope = self._scope
        await scope.run(ENSURE, self._store_params(name))

    def _store_params(self, name: str) -> dict[str, Any]:
        scope = self._scope
        return {
            "tenant_id": scope.tenant_id,
            "workspace_id": scope.workspace_id,
            "store": name,
            "created_at": utcnow(),
        }

    async def lock(self, name: str) -> None:
        """Hold the store's row lock until the transaction ends.

        One statement creates the row if needed and locks it: ``DO UPDATE`` of a non-key
        column takes ``FOR NO KEY UPDATE`` on PostgreSQL, which excludes other lockers but
        not plain writers: their foreign-key checks only take ``KEY SHARE``, and they look
        for the store row with a plain read before creating it (``_ENSURE``). On SQLite
        every transaction is already ``BEGIN IMMEDIATE``: the same statement just makes
        sure the row exists.
        """
        await self._scope.run(LOCK, self._store_params(name))
        self._known.add(name)
        self._scope.cache_bypass(cached.store_key(self._scope.workspace_id, name))

    async def list_stores(
        self, *, limit: int = 100, cursor: str | None = None
    ) -> Page[StoreRecord]:
        """Stores of the workspace ordered by name, one page at a time."""
        limit = count(limit, "limit", minimum=1, maximum=10_000)
        c = STORES.c
        query = select(STORES).where(
            c.tenant_id == self._scope.tenant_id, c.workspace_id == self._scope.workspace_id
        )
        if cursor is not None:
            query = query.where(c.name > validate_slug(cursor_key(cursor), what="cursor"))
        rows = await self._run(query.order_by(c.name).limit(limit + 1))
        items = [
            StoreRecord.model_construct(
                tenant_id=r.tenant_id,
                workspace_id=r.workspace_id,
                name=r.name,
                created_at=r.created_at,
            )
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_cursor(items[-1].name) if more else None)

    async def delete_store(self, name: str) -> None:
        """Delete the store and all its items; NotFoundError if there is no such store."""
        self._scope.require_writable("delete_store")
        validate_slug(name, what="store name")
        stmt = delete(STORES).where(self._store_where(name)).returning(STORES.c.name)
        if not await self._run(stmt):
            raise NotFoundError(f"store {name!r} does not exist")
        self._scope.cache_tenant_changed()

    # -- items -----------------------------------------------------------------------

    def _params(self, name: str, key: str | None = None) -> dict[str, Any]:
        params = {
            "tenant_id": self._scope.tenant_id,
            "workspace_id": self._scope.workspace_id,
            "store": name,
        }
        if key is not None:
            params["key_hash"] = key_hash(key)
        return params

    def _value(self, row: Any) -> Any:
        return decoded(row.key, row.value, row.codec, row.checksum)

    async def get(self, name: str, key: str) -> Any:
        """The value, or MISSING (through the read cache where it applies)."""
        params = self._params(name, key)
        cache, item = self._cache(name, params)
        if cache is not None:
            return await self._get_cached(cache, item, params)
        row = await self._scope.run_one(GET, params)
        return MISSING if row is None else self._value(row)

    async def contains(self, name: str, key: str) -> bool:
        params = self._params(name, key)
        cache, item = self._cache(name, params)
        if cache is not None:
            return await self._get_cached(cache, item, params) is not MISSING
        return await self._scope.run_one(CONTAINS, params) is not None

    def _cache(self, name: str, params: dict[str, Any]) -> tuple[AsyncReadCache | None, str]:
        workspace = self._scope.workspace_id
        item = cached.item_key(workspace, name, params["key_hash"])
        return self._scope.cache_for(item, cached.store_key(workspace, name)), item

    async def _get_cached(self, cache: AsyncReadCache, item: str, params: dict[str, Any]) -> Any:
        """A hit verified (checksum) and decoded as a row is; a miss read, then filled.
        An absent key is not cached."""
        tenant_id = self._scope.tenant_id
        entry, ticket = await cache.get(tenant_id, cached.ITEM, item)
        if entry is not None:
            key, codec, checksum = entry.meta
            try:
                return decoded(key, entry.value, codec, checksum)
            except DataCorruptionError:
                await cache.discard(tenant_id, item)
        row = await self._scope.run_one(GET, params)
        if row is None:
            return MISSING
        value = self._value(row)
        meta = (row.key, row.codec, row.checksum)
        await cache.fill(tenant_id, cached.ITEM, item, Entry(row.version, row.value, meta), ticket)
        return value

    async def count(self, name: str) -> int:
        return int(await self._scope.run_scalar(COUNT, self._params(name)))

    async def put_many(self, name: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Insert or replace ``items`` (key, raw JSON)."""
        if not items:
            return
        s = self._scope.settings
        ensure = name not in self._known
        for key, raw in items:
            enc = encode(raw, codec=s.compression, threshold=s.compression_threshold)
            params = self._params(name, key)
            params.update(key=key, value=enc.payload, codec=enc.codec, checksum=enc.checksum)
            params["now_us"] = time.time_ns() // 1000  # (SQLite's version clock)
            if ensure and self._scope.is_postgres:  # one statement (see PUT_ENSURING)
                params["created_at"] = utcnow()
                written = await self._scope.run(PUT_ENSURING, params)
            else:
                if ensure:
                    await self.ensure(name)
                written = await self._scope.run(PUT, params)
            ensure = False
            self._known.add(name)
            version = int(written[0].version)
            entry = Entry(version, enc.payload, (key, enc.codec, enc.checksum))
            self._changed(name, params["key_hash"], version, entry)

    def _changed(self, name: str, digest: bytes, floor: int, entry: Entry | None = None) -> None:
        """After this transaction commits, ``entry`` is what the key holds (None: it is
        gone, and nothing below version ``floor`` may be served)."""
        item = cached.item_key(self._scope.workspace_id, name, digest)
        self._scope.cache_written(cached.ITEM, item, entry, floor)

    async def remove(self, name: str, key: str) -> Any:
        """Delete the key; return its value, or MISSING when it was absent."""
        params = self._params(name, key)
        row = await self._scope.run_one(REMOVE, params)
        if row is None:
            return MISSING
        self._changed(name, params["key_hash"], int(row.version) + 1)
        return self._value(row)

    async def remove_first(self, name: str) -> tuple[str, Any] | None:
        """Delete and return the item with the smallest key, or None when empty."""
        stmt = dialect_statements(self._scope.dialect).remove_first
        for _ in range(5):  # another transaction may take the same first key first
            rows = await self._run(stmt, self._params(name))
            row = rows[0] if rows else None
            if row is not None:
                self._changed(name, key_hash(row.key), int(row.version) + 1)
                return row.key, self._value(row)
            if await self.count(name) == 0:
                return None
        return None

    async def clear(self, name: str) -> None:
        await self._scope.run(CLEAR, self._params(name))
        self._scope.cache_tenant_changed()  # (too wide to name its keys)

    async def keys_after(self, name: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` keys greater than ``after``, in code point order."""
        sql = dialect_statements(self._scope.dialect)
        params = {**self._params(name), "after": after, "limit": limit}
        stmt = sql.keys if after is None else sql.keys_after
        return [row.key for row in await self._run(stmt, params)]

    async def items_after(self, name: str, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` (key, value) pairs with keys greater than ``after``."""
        sql = dialect_statements(self._scope.dialect)
        params = {**self._params(name), "after": after, "limit": limit}
        stmt = sql.items if after is None else sql.items_after
        return [(row.key, self._value(row)) for row in await self._run(stmt, params)]
