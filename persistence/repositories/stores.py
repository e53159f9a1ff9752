"""Stores and their items, inside the transaction of the scope they are given."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, Table, Text, bindparam, delete, exists, func, select

from persistence._cursor import cursor_key, encode_cursor
from persistence._executor import Statement, execute, run, run_one, run_scalar
from persistence.codecs import decode, decode_json, encode
from persistence.errors import NotFoundError
from persistence.models.base import utcnow
from persistence.models.stores import Store, StoreItem
from persistence.records import Page, StoreRecord
from persistence.repositories._base import Scope
from persistence.repositories._sql import upsert
from persistence.validation import count, validate_slug

__all__ = ["MISSING", "StoreRepository", "key_hash"]

MISSING: Any = object()
_stores = cast(Table, Store.__table__)
_items = cast(Table, StoreItem.__table__)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class StoreRepository:
    """Stores of one workspace. Item methods take the store name and raw JSON bytes
    already validated by :mod:`persistence.stores`; nothing here commits."""

    def __init__(self, scope: Scope, known: set[str] | None = None):
        self._scope = scope
        # names whose row this transaction has locked, so exists until it ends
        self._known = known if known is not None else set()

    @property
    def scope(self) -> Scope:
        return self._scope

    def _run(self, clause: Any, params: dict[str, Any] | None = None) -> list[Any]:
        return execute(self._scope.connection, clause, params)

    # -- stores ----------------------------------------------------------------------

    def _store_where(self, name: str) -> ColumnElement[bool]:
        c = _stores.c
        return (
            (c.tenant_id == self._scope.tenant_id)
            & (c.workspace_id == self._scope.workspace_id)
            & (c.name == name)
        )

    def ensure(self, name: str) -> None:
        """Create the store row if it is missing (items reference it), without waiting on
        a store row another transaction holds locked (see ``_ENSURE``)."""
        if name in self._known:
            return
        scope = self._scope
        run(scope.connection, _ENSURE, self._store_params(name))

    def _store_params(self, name: str) -> dict[str, Any]:
        scope = self._scope
        return {
            "tenant_id": scope.tenant_id,
            "workspace_id": scope.workspace_id,
            "store": name,
            "created_at": utcnow(),
        }

    def lock(self, name: str) -> None:
        """Hold the store's row lock until the transaction ends.

        One statement creates the row if needed and locks it: ``DO UPDATE`` of a non-key
        column takes ``FOR NO KEY UPDATE`` on PostgreSQL, which excludes other lockers but
        not plain writers: their foreign-key checks only take ``KEY SHARE``, and they look
        for the store row with a plain read before creating it (``_ENSURE``). On SQLite
        every transaction is already ``BEGIN IMMEDIATE``: the same statement just makes
        sure the row exists.
        """
        run(self._scope.connection, _LOCK, self._store_params(name))
        self._known.add(name)

    def list_stores(self, *, limit: int = 100, cursor: str | None = None) -> Page[StoreRecord]:
        """Stores of the workspace ordered by name, one page at a time."""
        limit = count(limit, "limit", minimum=1, maximum=10_000)
        c = _stores.c
        query = select(_stores).where(
            c.tenant_id == self._scope.tenant_id, c.workspace_id == self._scope.workspace_id
        )
        if cursor is not None:
            query = query.where(c.name > validate_slug(cursor_key(cursor), what="cursor"))
        rows = self._run(query.order_by(c.name).limit(limit + 1))
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

    def delete_store(self, name: str) -> None:
        """Delete the store and all its items; NotFoundError if there is no such store."""
        self._scope.require_writable("delete_store")
        validate_slug(name, what="store name")
        stmt = delete(_stores).where(self._store_where(name)).returning(_stores.c.name)
        if not self._run(stmt):
            raise NotFoundError(f"store {name!r} does not exist")

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
        return _decoded(row.key, row.value, row.codec, row.checksum)

    def get(self, name: str, key: str) -> Any:
        """The value, or MISSING."""
        row = run_one(self._scope.connection, _GET, self._params(name, key))
        return MISSING if row is None else self._value(row)

    def contains(self, name: str, key: str) -> bool:
        return run_one(self._scope.connection, _CONTAINS, self._params(name, key)) is not None

    def count(self, name: str) -> int:
        return int(run_scalar(self._scope.connection, _COUNT, self._params(name)))

    def put_many(self, name: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Insert or replace ``items`` (key, raw JSON)."""
        if not items:
            return
        s = self._scope.settings
        connection = self._scope.connection
        ensure = name not in self._known
        for key, raw in items:
            enc = encode(raw, codec=s.compression, threshold=s.compression_threshold)
            params = self._params(name, key)
            params.update(key=key, value=enc.payload, codec=enc.codec, checksum=enc.checksum)
            if ensure and self._scope.is_postgres:  # one statement (see _PUT_ENSURING)
                params["created_at"] = utcnow()
                run(connection, _PUT_ENSURING, params)
            else:
                if ensure:
                    self.ensure(name)
                run(connection, _PUT, params)
            ensure = False
            self._known.add(name)

    def remove(self, name: str, key: str) -> Any:
        """Delete the key; return its value, or MISSING when it was absent."""
        row = run_one(self._scope.connection, _REMOVE, self._params(name, key))
        return MISSING if row is None else self._value(row)

    def remove_first(self, name: str) -> tuple[str, Any] | None:
        """Delete and return the item with the smallest key, or None when empty."""
        stmt = _statements(self._scope.dialect).remove_first
        for _ in range(5):  # another transaction may take the same first key first
            rows = self._run(stmt, self._params(name))
            row = rows[0] if rows else None
            if row is not None:
                return row.key, self._value(row)
            if self.count(name) == 0:
                return None
        return None

    def clear(self, name: str) -> None:
        run(self._scope.connection, _CLEAR, self._params(name))

    def keys_after(self, name: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` keys greater than ``after``, in code point order."""
        sql = _statements(self._scope.dialect)
        params = {**self._params(name), "after": after, "limit": limit}
        stmt = sql.keys if after is None else sql.keys_after
        return [row.key for row in self._run(stmt, params)]

    def items_after(self, name: str, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` (key, value) pairs with keys greater than ``after``."""
        sql = _statements(self._scope.dialect)
        params = {**self._params(name), "after": after, "limit": limit}
        stmt = sql.items if after is None else sql.items_after
        return [(row.key, self._value(row)) for row in self._run(stmt, params)]


# Statements are defined once, for both backends, and run by persistence._executor.
_c = _items.c
_IN_STORE = (
    (_c.tenant_id == bindparam("tenant_id"))
    & (_c.workspace_id == bindparam("workspace_id"))
    & (_c.store == bindparam("store"))
)
_ONE_KEY = _IN_STORE & (_c.key_hash == bindparam("key_hash"))
_ROW = (_c.key, _c.value, _c.codec, _c.checksum)
_GET = Statement(select(*_ROW).where(_ONE_KEY), "stores_get")
_CONTAINS = Statement(select(_c.key_hash).where(_ONE_KEY), "stores_contains")
_COUNT = Statement(select(func.count()).select_from(_items).where(_IN_STORE), "stores_count")
_REMOVE = Statement(delete(_items).where(_ONE_KEY).returning(*_ROW), "stores_remove")
_CLEAR = Statement(delete(_items).where(_IN_STORE), "stores_clear")


def _put() -> Any:
    columns = ("tenant_id", "workspace_id", "store", "key_hash", "key", "value", "codec")
    insert = upsert(_items).values({column: bindparam(column) for column in (*columns, "checksum")})
    return insert.on_conflict_do_update(
        index_elements=[_c.tenant_id, _c.workspace_id, _c.store, _c.key_hash],
        set_={
            "value": insert.excluded.value,
            "codec": insert.excluded.codec,
            "checksum": insert.excluded.checksum,
        },
    )


def _wanted_store() -> Any:
    return select(
        bindparam("tenant_id", type_=_stores.c.tenant_id.type),
        bindparam("workspace_id", type_=_stores.c.workspace_id.type),
        bindparam("store", type_=_stores.c.name.type),
        bindparam("created_at", type_=_stores.c.created_at.type),
    )


def _ensure() -> Any:
    """Create the store row if it is missing. An existing row is found by a plain read, so
    a writer never waits on a row another transaction holds locked (``lock()`` takes FOR
    NO KEY UPDATE on it; ``INSERT ... ON CONFLICT DO NOTHING`` alone would wait for that
    transaction to end). Only a store created concurrently is left to ON CONFLICT."""
    s = _stores.c
    present = exists().where(
        s.tenant_id == bindparam("tenant_id"),
        s.workspace_id == bindparam("workspace_id"),
        s.name == bindparam("store"),
    )
    source = _wanted_store().where(~present)
    insert = upsert(_stores).from_select(
        ["tenant_id", "workspace_id", "name", "created_at"], source
    )
    return insert.on_conflict_do_nothing()


def _lock() -> Any:
    """Create the store row if needed and lock it (see StoreRepository.lock)."""
    insert = upsert(_stores).values(
        tenant_id=bindparam("tenant_id"),
        workspace_id=bindparam("workspace_id"),
        name=bindparam("store"),
        created_at=bindparam("created_at"),
    )
    return insert.on_conflict_do_update(
        index_elements=[_stores.c.tenant_id, _stores.c.workspace_id, _stores.c.name],
        set_={"created_at": _stores.c.created_at},
    )


_PUT = Statement(_put(), "stores_put")
_ENSURE = Statement(_ensure(), "stores_ensure")
_LOCK = Statement(_lock(), "stores_lock")
# PostgreSQL: the store row (if missing) and the item in one statement, the ensure as a
# data-modifying CTE (SQLite has none: it runs _ENSURE then _PUT). The item's foreign key
# is checked at the end of the statement, after the CTE ran.
_PUT_ENSURING = Statement(_put().add_cte(_ensure().cte("ensure_store")), "stores_put_ensuring")


@dataclass(frozen=True)
class _DialectStatements:
    remove_first: Any
    keys: Any
    keys_after: Any
    items: Any
    items_after: Any


@functools.cache
def _statements(dialect: str) -> _DialectStatements:
    # Code point order on both backends: "C" collation = UTF-8 byte order = SQLite BINARY.
    order = _c.key.collate("C") if dialect == "postgresql" else _c.key
    after = order > bindparam("after", type_=Text())
    limit = bindparam("limit", type_=Integer())
    first = select(_c.key_hash).where(_IN_STORE).order_by(order).limit(1).scalar_subquery()
    keys = select(_c.key).where(_IN_STORE)
    items = select(*_ROW).where(_IN_STORE)
    return _DialectStatements(
        remove_first=delete(_items).where(_IN_STORE, _c.key_hash == first).returning(*_ROW),
        keys=keys.order_by(order).limit(limit),
        keys_after=keys.where(after).order_by(order).limit(limit),
        items=items.order_by(order).limit(limit),
        items_after=items.where(after).order_by(order).limit(limit),
    )


def _decoded(key: str, value: bytes, codec: str, checksum: str) -> Any:
    """An item's JSON value from its stored columns; DataCorruptionError if altered."""
    what = f"store item {key!r}"
    raw = decode(value, codec=codec, expected_checksum=checksum, what=what)
    return decode_json(raw, what=what)
