"""What the sync and async store repositories share: the statements on store rows and
items (each defined, and compiled, once), the key hash, the absent-value sentinel and
the decoding of a stored item."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Integer, Table, Text, bindparam, delete, exists, func, select

from persistence._compiled import Statement
from persistence.codecs import decode, decode_json
from persistence.models.stores import Store, StoreItem
from persistence.repositories._sql import ClockMicros, next_version, upsert

__all__ = [
    "CLEAR",
    "CONTAINS",
    "COUNT",
    "ENSURE",
    "GET",
    "LOCK",
    "MISSING",
    "PUT",
    "PUT_ENSURING",
    "REMOVE",
    "STORES",
    "decoded",
    "dialect_statements",
    "key_hash",
]

#: What a repository read returns for an absent key (values may be None).
MISSING: Any = object()
STORES = cast(Table, Store.__table__)
_items = cast(Table, StoreItem.__table__)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


# Statements are defined once, for both backends, and run by persistence._executor.
_c = _items.c
_IN_STORE = (
    (_c.tenant_id == bindparam("tenant_id"))
    & (_c.workspace_id == bindparam("workspace_id"))
    & (_c.store == bindparam("store"))
)
_ONE_KEY = _IN_STORE & (_c.key_hash == bindparam("key_hash"))
_ROW = (_c.key, _c.value, _c.codec, _c.checksum, _c.version)
GET = Statement(select(*_ROW).where(_ONE_KEY), "stores_get")
CONTAINS = Statement(select(_c.key_hash).where(_ONE_KEY), "stores_contains")
COUNT = Statement(select(func.count()).select_from(_items).where(_IN_STORE), "stores_count")
REMOVE = Statement(delete(_items).where(_ONE_KEY).returning(*_ROW), "stores_remove")
CLEAR = Statement(delete(_items).where(_IN_STORE), "stores_clear")


def _put() -> Any:
    """Insert or replace an item; its new version: the clock, or one above the item's
    last version when the clock has not moved past it (versions of a key only grow,
    across a delete and a new write too, unless the clock went back)."""
    columns = ("tenant_id", "workspace_id", "store", "key_hash", "key", "value", "codec")
    values: dict[str, Any] = {column: bindparam(column) for column in (*columns, "checksum")}
    insert = upsert(_items).values({**values, "version": ClockMicros()})
    return insert.on_conflict_do_update(
        index_elements=[_c.tenant_id, _c.workspace_id, _c.store, _c.key_hash],
        set_={
            "value": insert.excluded.value,
            "codec": insert.excluded.codec,
            "checksum": insert.excluded.checksum,
            "version": next_version(_items, insert),
        },
    ).returning(_c.version)


def _wanted_store() -> Any:
    return select(
        bindparam("tenant_id", type_=STORES.c.tenant_id.type),
        bindparam("workspace_id", type_=STORES.c.workspace_id.type),
        bindparam("store", type_=STORES.c.name.type),
        bindparam("created_at", type_=STORES.c.created_at.type),
    )


def _ensure() -> Any:
    """Create the store row if it is missing. An existing row is found by a plain read, so
    a writer never waits on a row another transaction holds locked (``lock()`` takes FOR
    NO KEY UPDATE on it; ``INSERT ... ON CONFLICT DO NOTHING`` alone would wait for that
    transaction to end). Only a store created concurrently is left to ON CONFLICT."""
    s = STORES.c
    present = exists().where(
        s.tenant_id == bindparam("tenant_id"),
        s.workspace_id == bindparam("workspace_id"),
        s.name == bindparam("store"),
    )
    source = _wanted_store().where(~present)
    insert = upsert(STORES).from_select(["tenant_id", "workspace_id", "name", "created_at"], source)
    return insert.on_conflict_do_nothing()


def _lock() -> Any:
    """Create the store row if needed and lock it (see StoreRepository.lock)."""
    insert = upsert(STORES).values(
        tenant_id=bindparam("tenant_id"),
        workspace_id=bindparam("workspace_id"),
        name=bindparam("store"),
        created_at=bindparam("created_at"),
    )
    return insert.on_conflict_do_update(
        index_elements=[STORES.c.tenant_id, STORES.c.workspace_id, STORES.c.name],
        set_={"created_at": STORES.c.created_at},
    )


PUT = Statement(_put(), "stores_put")
ENSURE = Statement(_ensure(), "stores_ensure")
LOCK = Statement(_lock(), "stores_lock")
# PostgreSQL: the store row (if missing) and the item in one statement, the ensure as a
# data-modifying CTE (SQLite has none: it runs ENSURE then PUT). The item's foreign key
# is checked at the end of the statement, after the CTE ran.
PUT_ENSURING = Statement(_put().add_cte(_ensure().cte("ensure_store")), "stores_put_ensuring")


@dataclass(frozen=True)
class _DialectStatements:
    remove_first: Any
    keys: Any
    keys_after: Any
    items: Any
    items_after: Any


@functools.cache
def dialect_statements(dialect: str) -> _DialectStatements:
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


def decoded(key: str, value: bytes, codec: str, checksum: str) -> Any:
    """An item's JSON value from its stored columns; DataCorruptionError if altered."""
    what = f"store item {key!r}"
    raw = decode(value, codec=codec, expected_checksum=checksum, what=what)
    return decode_json(raw, what=what)
