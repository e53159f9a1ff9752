"""Stores and their items, inside the transaction of the scope they are given."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, Table, Text, bindparam, delete, func, select
from sqlalchemy.orm import Session

from persistence._cursor import cursor_key, encode_cursor
from persistence._driver import fetch
from persistence.codecs import decode, decode_json, encode
from persistence.errors import NotFoundError
from persistence.fencing import upsert
from persistence.models.base import utcnow
from persistence.models.stores import Store, StoreItem
from persistence.records import Page, StoreRecord
from persistence.repositories._base import Scope
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
        self._pg = scope.is_postgres

    @property
    def scope(self) -> Scope:
        return self._scope

    @property
    def _session(self) -> Session:
        # Built on first use: the PostgreSQL item paths below run on scope.connection.
        return self._scope.session

    # -- stores ----------------------------------------------------------------------

    def _store_where(self, name: str) -> ColumnElement[bool]:
        c = _stores.c
        return (
            (c.tenant_id == self._scope.tenant_id)
            & (c.workspace_id == self._scope.workspace_id)
            & (c.name == name)
        )

    def ensure(self, name: str) -> None:
        """Create the store row if it is missing (items reference it)."""
        if name in self._known:
            return
        if self._pg:  # without waiting on a locked store row (see _ENSURE_CTE)
            scope = self._scope
            params = (scope.tenant_id, scope.workspace_id, name, utcnow())
            fetch(scope.connection, _PG_ENSURE, params)
            return
        stmt = upsert(self._scope.dialect, _stores).values(
            tenant_id=self._scope.tenant_id,
            workspace_id=self._scope.workspace_id,
            name=name,
            created_at=utcnow(),
        )
        self._session.execute(stmt.on_conflict_do_nothing())

    def lock(self, name: str) -> None:
        """Hold the store's row lock until the transaction ends (PostgreSQL).

        One statement creates the row if needed and locks it: ``DO UPDATE`` of a non-key
        column takes ``FOR NO KEY UPDATE``, which excludes other lockers but not plain
        writers: their foreign-key checks only take ``KEY SHARE``, and they look for the
        store row with a plain read before creating it (``_ENSURE_CTE``). On SQLite every
        transaction is already ``BEGIN IMMEDIATE``: creating the row is enough.
        """
        if not self._pg:
            self.ensure(name)
        else:  # prepared on the driver (persistence._driver), not through the session
            s = self._scope
            fetch(s.connection, _PG_LOCK, (s.tenant_id, s.workspace_id, name, utcnow()))
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
        rows = self._session.execute(query.order_by(c.name).limit(limit + 1)).all()
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
        validate_slug(name, what="store name")
        stmt = delete(_stores).where(self._store_where(name)).returning(_stores.c.name)
        if self._session.execute(stmt).first() is None:
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

    def _pg_key(self, sql: str, name: str, key: str, *more: Any) -> list[tuple[Any, ...]]:
        """PostgreSQL: run a single-key statement (``_PG_*`` below) prepared on the
        driver; SQLAlchemy's execution path costs more client CPU than the round trip."""
        s = self._scope
        return fetch(s.connection, sql, (s.tenant_id, s.workspace_id, name, key_hash(key), *more))

    def get(self, name: str, key: str) -> Any:
        """The value, or MISSING."""
        if self._pg:
            rows = self._pg_key(_PG_GET, name, key)
            return _decoded(key, *rows[0]) if rows else MISSING
        row = self._session.execute(_GET, self._params(name, key)).first()
        return MISSING if row is None else self._value(row)

    def contains(self, name: str, key: str) -> bool:
        if self._pg:
            return bool(self._pg_key(_PG_CONTAINS, name, key))
        return self._session.execute(_CONTAINS, self._params(name, key)).first() is not None

    def count(self, name: str) -> int:
        return int(self._session.execute(_COUNT, self._params(name)).scalar_one())

    def put_many(self, name: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Insert or replace ``items`` (key, raw JSON) in one statement."""
        if not items:
            return
        s = self._scope.settings
        if len(items) == 1 and self._pg:
            # One statement; unless this transaction holds the store's row, its CTE
            # creates the row if missing.
            key, raw = items[0]
            enc = encode(raw, codec=s.compression, threshold=s.compression_threshold)
            item = (key, enc.payload, enc.codec, enc.checksum)
            if name in self._known:
                self._pg_key(_PG_PUT, name, key, *item)
            else:
                ids = (self._scope.tenant_id, self._scope.workspace_id, name)
                params = (*ids, utcnow(), *ids, key_hash(key), *item)
                fetch(self._scope.connection, _PG_PUT_ENSURING, params)
            return
        self.ensure(name)
        rows = []
        for key, raw in items:
            enc = encode(raw, codec=s.compression, threshold=s.compression_threshold)
            row = self._params(name, key)
            row.update(key=key, value=enc.payload, codec=enc.codec, checksum=enc.checksum)
            rows.append(row)
        upsert = _statements(self._scope.dialect).upsert
        if len(rows) == 1:
            self._session.execute(upsert.values(rows[0]))
        else:
            self._session.execute(upsert, rows)

    def remove(self, name: str, key: str) -> Any:
        """Delete the key; return its value, or MISSING when it was absent."""
        if self._pg:
            rows = self._pg_key(_PG_REMOVE, name, key)
            return _decoded(key, *rows[0]) if rows else MISSING
        row = self._session.execute(_REMOVE, self._params(name, key)).first()
        return MISSING if row is None else self._value(row)

    def remove_first(self, name: str) -> tuple[str, Any] | None:
        """Delete and return the item with the smallest key, or None when empty."""
        stmt = _statements(self._scope.dialect).remove_first
        for _ in range(5):  # another transaction may take the same first key first
            row = self._session.execute(stmt, self._params(name)).first()
            if row is not None:
                return row.key, self._value(row)
            if self.count(name) == 0:
                return None
        return None

    def clear(self, name: str) -> None:
        self._session.execute(_CLEAR, self._params(name))

    def keys_after(self, name: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` keys greater than ``after``, in code point order."""
        sql = _statements(self._scope.dialect)
        params = {**self._params(name), "after": after, "limit": limit}
        stmt = sql.keys if after is None else sql.keys_after
        return list(self._session.execute(stmt, params).scalars())

    def items_after(self, name: str, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` (key, value) pairs with keys greater than ``after``."""
        sql = _statements(self._scope.dialect)
        params = {**self._params(name), "after": after, "limit": limit}
        stmt = sql.items if after is None else sql.items_after
        return [(row.key, self._value(row)) for row in self._session.execute(stmt, params)]


# Statements are built once, parameters bound per call: building an expression tree on
# every operation costs more than the SQLite round trip it describes.
_c = _items.c
_IN_STORE = (
    (_c.tenant_id == bindparam("tenant_id"))
    & (_c.workspace_id == bindparam("workspace_id"))
    & (_c.store == bindparam("store"))
)
_ONE_KEY = _IN_STORE & (_c.key_hash == bindparam("key_hash"))
_ROW = (_c.key, _c.value, _c.codec, _c.checksum)
_GET = select(*_ROW).where(_ONE_KEY)
_CONTAINS = select(_c.key_hash).where(_ONE_KEY)
_COUNT = select(func.count()).select_from(_items).where(_IN_STORE)
_REMOVE = delete(_items).where(_ONE_KEY).returning(*_ROW)
_CLEAR = delete(_items).where(_IN_STORE)

# The single-key statements in PostgreSQL SQL, run prepared by persistence._driver.
# Parameters: tenant_id, workspace_id, store, key_hash, then those named. Rows are
# (value, codec, checksum): the caller knows the key.
_PG_ONE_KEY = "tenant_id = %s::uuid AND workspace_id = %s::uuid AND store = %s AND key_hash = %s"
_PG_GET = f"SELECT value, codec, checksum FROM store_items WHERE {_PG_ONE_KEY}"
_PG_CONTAINS = f"SELECT 1 FROM store_items WHERE {_PG_ONE_KEY}"
_PG_REMOVE = f"DELETE FROM store_items WHERE {_PG_ONE_KEY} RETURNING value, codec, checksum"
# + key, value, codec, checksum
_PG_PUT = """INSERT INTO store_items
    (tenant_id, workspace_id, store, key_hash, key, value, codec, checksum)
VALUES (%s::uuid, %s::uuid, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, workspace_id, store, key_hash) DO UPDATE SET
    value = excluded.value, codec = excluded.codec, checksum = excluded.checksum"""
# Create the store row if missing and lock it (see StoreRepository.lock). Parameters:
# tenant_id, workspace_id, store, created_at.
_PG_LOCK = """INSERT INTO stores AS s (tenant_id, workspace_id, name, created_at)
VALUES (%s::uuid, %s::uuid, %s, %s::timestamptz)
ON CONFLICT (tenant_id, workspace_id, name) DO UPDATE SET created_at = s.created_at"""
# Create the store row if it is missing. An existing row is found by a plain read, so a
# writer never waits on a row another transaction holds locked (``transaction(lock=True)``
# takes FOR NO KEY UPDATE on it; ``INSERT ... ON CONFLICT DO NOTHING`` alone would wait
# for that transaction to end). Only a store created concurrently is left to ON CONFLICT.
# Parameters: tenant_id, workspace_id, store, created_at.
_ENSURE_CTE = """wanted (tenant_id, workspace_id, name, created_at) AS (
    VALUES (%s::uuid, %s::uuid, %s::text, %s::timestamptz)
), ensure_store AS (
    INSERT INTO stores (tenant_id, workspace_id, name, created_at)
    SELECT w.tenant_id, w.workspace_id, w.name, w.created_at FROM wanted w
    WHERE NOT EXISTS (
        SELECT 1 FROM stores s
        WHERE s.tenant_id = w.tenant_id AND s.workspace_id = w.workspace_id AND s.name = w.name
    )
    ON CONFLICT DO NOTHING
)"""
_PG_ENSURE = f"WITH {_ENSURE_CTE}\nSELECT 1"
# Parameters: those of _ENSURE_CTE, then those of _PG_PUT. The item's foreign key is
# checked at the end of the statement, after the CTE ran.
_PG_PUT_ENSURING = f"WITH {_ENSURE_CTE}\n{_PG_PUT}"


@dataclass(frozen=True)
class _DialectStatements:
    upsert: Any
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
    insert = upsert(dialect, _items)
    first = select(_c.key_hash).where(_IN_STORE).order_by(order).limit(1).scalar_subquery()
    keys = select(_c.key).where(_IN_STORE)
    items = select(*_ROW).where(_IN_STORE)
    item_upsert = insert.on_conflict_do_update(
        index_elements=[_c.tenant_id, _c.workspace_id, _c.store, _c.key_hash],
        set_={
            "value": insert.excluded.value,
            "codec": insert.excluded.codec,
            "checksum": insert.excluded.checksum,
        },
    )
    return _DialectStatements(
        upsert=item_upsert,
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
