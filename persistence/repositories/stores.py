"""Stores and their items, inside the transaction of the scope they are given."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, func, select

from persistence.codecs import decode, decode_json, encode
from persistence.errors import InvalidInputError, NotFoundError
from persistence.fencing import upsert
from persistence.models.base import utcnow
from persistence.models.stores import Store, StoreItem
from persistence.records import Page, StoreRecord
from persistence.repositories._base import Scope
from persistence.validation import validate_slug

__all__ = ["MISSING", "StoreRepository", "key_hash"]

MISSING: Any = object()
_stores = cast(Table, Store.__table__)
_items = cast(Table, StoreItem.__table__)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class StoreRepository:
    """Stores of one workspace. Item methods take the store name and raw JSON bytes
    already validated by :mod:`persistence.stores`; nothing here commits."""

    def __init__(self, scope: Scope):
        self._scope = scope
        self._session = scope.session
        self._pg = scope.is_postgres

    @property
    def scope(self) -> Scope:
        return self._scope

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
        stmt = upsert(self._scope.dialect, _stores).values(
            tenant_id=self._scope.tenant_id,
            workspace_id=self._scope.workspace_id,
            name=name,
            created_at=utcnow(),
        )
        self._session.execute(stmt.on_conflict_do_nothing())

    def lock(self, name: str) -> None:
        """Hold the store's row lock until the transaction ends (PostgreSQL).

        ``FOR NO KEY UPDATE`` excludes other lockers but not plain writers, whose
        foreign-key checks only take ``KEY SHARE``. On SQLite every transaction is
        already ``BEGIN IMMEDIATE``, so nothing more is needed.
        """
        if not self._pg:
            return
        self.ensure(name)
        self._session.execute(
            select(_stores.c.name).where(self._store_where(name)).with_for_update(key_share=True)
        )

    def list_stores(self, *, limit: int = 100, cursor: str | None = None) -> Page[StoreRecord]:
        """Stores of the workspace ordered by name, one page at a time."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInputError("limit must be an int from 1 to 10000")
        c = _stores.c
        query = select(_stores).where(
            c.tenant_id == self._scope.tenant_id, c.workspace_id == self._scope.workspace_id
        )
        if cursor is not None:
            query = query.where(c.name > _decode_cursor(cursor))
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
        return Page(items=items, next_cursor=_encode_cursor(items[-1].name) if more else None)

    def delete_store(self, name: str) -> None:
        """Delete the store and all its items; NotFoundError if there is no such store."""
        validate_slug(name, what="store name")
        stmt = delete(_stores).where(self._store_where(name)).returning(_stores.c.name)
        if self._session.execute(stmt).first() is None:
            raise NotFoundError(f"store {name!r} does not exist")

    # -- items -----------------------------------------------------------------------

    def _where(self, name: str, key: str | None = None) -> ColumnElement[bool]:
        c = _items.c
        where = (
            (c.tenant_id == self._scope.tenant_id)
            & (c.workspace_id == self._scope.workspace_id)
            & (c.store == name)
        )
        return where if key is None else where & (c.key_hash == key_hash(key))

    def _order_key(self) -> ColumnElement[str]:
        # Code point order on both backends: "C" collation = UTF-8 byte order = SQLite BINARY.
        return _items.c.key.collate("C") if self._pg else _items.c.key

    def _value(self, row: Any) -> Any:
        raw = decode(
            row.value,
            codec=row.codec,
            expected_checksum=row.checksum,
            what=f"store item {row.key!r}",
        )
        return decode_json(raw)

    def get(self, name: str, key: str) -> Any:
        """The value, or MISSING."""
        c = _items.c
        row = self._session.execute(
            select(c.key, c.value, c.codec, c.checksum).where(self._where(name, key))
        ).first()
        return MISSING if row is None else self._value(row)

    def contains(self, name: str, key: str) -> bool:
        stmt = select(_items.c.key_hash).where(self._where(name, key))
        return self._session.execute(stmt).first() is not None

    def count(self, name: str) -> int:
        stmt = select(func.count()).select_from(_items).where(self._where(name))
        return int(self._session.execute(stmt).scalar_one())

    def put_many(self, name: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Insert or replace ``items`` (key, raw JSON) in one statement."""
        if not items:
            return
        self.ensure(name)
        s = self._scope.settings
        rows = []
        for key, raw in items:
            enc = encode(raw, codec=s.compression, threshold=s.compression_threshold)
            rows.append(
                {
                    "tenant_id": self._scope.tenant_id,
                    "workspace_id": self._scope.workspace_id,
                    "store": name,
                    "key_hash": key_hash(key),
                    "key": key,
                    "value": enc.payload,
                    "codec": enc.codec,
                    "checksum": enc.checksum,
                }
            )
        stmt = upsert(self._scope.dialect, _items)
        stmt = stmt.on_conflict_do_update(
            index_elements=[
                _items.c.tenant_id,
                _items.c.workspace_id,
                _items.c.store,
                _items.c.key_hash,
            ],
            set_={
                "value": stmt.excluded.value,
                "codec": stmt.excluded.codec,
                "checksum": stmt.excluded.checksum,
            },
        )
        if len(rows) == 1:
            self._session.execute(stmt.values(rows[0]))
        else:
            self._session.execute(stmt, rows)

    def remove(self, name: str, key: str) -> Any:
        """Delete the key; return its value, or MISSING when it was absent."""
        c = _items.c
        stmt = delete(_items).where(self._where(name, key))
        row = self._session.execute(stmt.returning(c.key, c.value, c.codec, c.checksum)).first()
        return MISSING if row is None else self._value(row)

    def remove_first(self, name: str) -> tuple[str, Any] | None:
        """Delete and return the item with the smallest key, or None when empty."""
        c = _items.c
        for _ in range(5):  # another transaction may take the same first key first
            first = (
                select(c.key_hash).where(self._where(name)).order_by(self._order_key()).limit(1)
            ).scalar_subquery()
            stmt = delete(_items).where(self._where(name), c.key_hash == first)
            row = self._session.execute(stmt.returning(c.key, c.value, c.codec, c.checksum)).first()
            if row is not None:
                return row.key, self._value(row)
            if self.count(name) == 0:
                return None
        return None

    def clear(self, name: str) -> None:
        self._session.execute(delete(_items).where(self._where(name)))

    def keys_after(self, name: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` keys greater than ``after``, in code point order."""
        stmt = select(_items.c.key).where(self._where(name))
        if after is not None:
            stmt = stmt.where(self._order_key() > after)
        stmt = stmt.order_by(self._order_key()).limit(limit)
        return list(self._session.execute(stmt).scalars())

    def items_after(self, name: str, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` (key, value) pairs with keys greater than ``after``."""
        c = _items.c
        stmt = select(c.key, c.value, c.codec, c.checksum).where(self._where(name))
        if after is not None:
            stmt = stmt.where(self._order_key() > after)
        rows = self._session.execute(stmt.order_by(self._order_key()).limit(limit)).all()
        return [(row.key, self._value(row)) for row in rows]


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        name = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        return validate_slug(name, what="cursor")
    except (binascii.Error, UnicodeError, ValueError, AttributeError):
        raise InvalidInputError(f"invalid cursor {cursor!r}") from None
