"""The store's statements: each compiled once, a search once per filter shape
(``persistence.langgraph._store_filters`` builds the filter)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)

from persistence._compiled import Statement
from persistence.langgraph._store_filters import Binds, item_filter
from persistence.models.langgraph import LgStoreItem
from persistence.repositories._sql import TENANT, upsert

__all__ = [
    "DELETE",
    "GET",
    "ITEMS",
    "PUT",
    "namespaces",
    "refresh",
    "search",
    "sweep",
]

ITEMS = cast(Table, LgStoreItem.__table__)
_c = ITEMS.c
_ROW: tuple[Any, ...] = (_c.namespace, _c.key, _c.value, _c.checksum, _c.created_at)
_ROW += (_c.updated_at, _c.ttl_ms)
_LIVE = or_(_c.expires_at.is_(None), _c.expires_at > bindparam("now"))
_ONE = and_(
    _c.tenant_id == TENANT, _c.namespace == bindparam("namespace"), _c.key == bindparam("key")
)

GET = Statement(select(*_ROW).where(_ONE, _LIVE), "lg_store_get")
DELETE = Statement(delete(ITEMS).where(_ONE), "lg_store_delete")


def _put() -> Any:
    names = ("namespace", "key", "value", "checksum", "created_at", "updated_at")
    values: dict[str, Any] = {name: bindparam(name) for name in names}
    values |= {"expires_at": bindparam("expires_at"), "ttl_ms": bindparam("ttl_ms")}
    insert = upsert(ITEMS).values(tenant_id=TENANT, **values)
    kept = ("value", "checksum", "updated_at", "expires_at", "ttl_ms")
    return insert.on_conflict_do_update(
        index_elements=[_c.tenant_id, _c.namespace, _c.key],
        set_={name: insert.excluded[name] for name in kept},
    )


PUT = Statement(_put(), "lg_store_put")


def refresh(tenant_id: Any, keys: list[tuple[str, str]], ttl_ms: int, expires_at: Any) -> Any:
    """Move the expiry of the items ``keys`` (namespace, key) whose TTL is ``ttl_ms`` to
    ``expires_at`` (a read with ``refresh_ttl``)."""
    return (
        update(ITEMS)
        .where(
            _c.tenant_id == tenant_id,
            tuple_(_c.namespace, _c.key).in_(keys),
            _c.ttl_ms == ttl_ms,
        )
        .values(expires_at=expires_at)
    )


def sweep(limit: int) -> Any:
    """Delete up to ``limit`` expired items of the tenant, returning their keys."""
    doomed = (
        select(_c.namespace, _c.key)
        .where(_c.tenant_id == TENANT, _c.expires_at <= bindparam("now"))
        .limit(limit)
    )
    keys = tuple_(_c.namespace, _c.key).in_(doomed)
    return delete(ITEMS).where(_c.tenant_id == TENANT, keys).returning(_c.key)


def _prefix(prefix: str) -> ColumnElement[bool]:
    """Items whose namespace is ``:prefix`` or starts with ``:prefix`` and a ``.``
    (``:under``, ``:under_length``); no condition for the empty prefix.

    A range of the primary key first: in byte order (the column's collation, ``"C"`` on
    PostgreSQL since migration 0009, SQLite's BINARY) every such namespace lies in
    ``[:prefix, :upper)``, ``:upper`` the prefix and a ``/`` (the byte after ``.``), so
    only the prefix's rows are read."""
    if not prefix:
        return _c.tenant_id == TENANT
    in_range = and_(_c.namespace >= bindparam("prefix"), _c.namespace < bindparam("upper"))
    under = func.substr(_c.namespace, 1, bindparam("under_length")) == bindparam("under")
    return and_(in_range, or_(_c.namespace == bindparam("prefix"), under))


def _prefix_params(prefix: str) -> dict[str, Any]:
    if not prefix:
        return {}
    under = prefix + "."
    return {"prefix": prefix, "upper": prefix + "/", "under": under, "under_length": len(under)}


#: The search statements built so far, by their shape (dialect, prefix or not, filter):
#: each is compiled once and run with its values, the first statement of its unit of work
#: carrying the tenant entry like every other. Bounded: a new shape past it is built anew.
_SEARCHES: dict[tuple[Any, ...], Statement] = {}
_MAX_SHAPES = 512


def search(
    prefix: str, filter: Mapping[str, Any], limit: int, offset: int, dialect: str
) -> tuple[Statement, dict[str, Any]]:
    """The search statement of this shape and its parameters."""
    binds = Binds()
    where = item_filter(filter, dialect, binds)
    shape = (dialect, bool(prefix), *binds.shape)
    statement = _SEARCHES.get(shape)
    if statement is None:
        query = (
            select(*_ROW)
            .where(_c.tenant_id == TENANT, _LIVE, _prefix(prefix), *where)
            .order_by(_c.updated_at.desc(), _c.namespace, _c.key)
            .limit(bindparam("limit"))
            .offset(bindparam("offset"))
        )
        statement = Statement(query, f"lg_store_search_{len(_SEARCHES)}")
        if len(_SEARCHES) < _MAX_SHAPES:
            _SEARCHES[shape] = statement
    params = {**binds.values, **_prefix_params(prefix), "limit": limit, "offset": offset}
    return statement, params


_NAMESPACES = {
    True: Statement(
        select(_c.namespace).distinct().where(_c.tenant_id == TENANT, _LIVE, _prefix("x")),
        "lg_store_namespaces_under",
    ),
    False: Statement(
        select(_c.namespace).distinct().where(_c.tenant_id == TENANT, _LIVE), "lg_store_namespaces"
    ),
}


def namespaces(prefix: str) -> tuple[Statement, dict[str, Any]]:
    """The distinct namespaces of live items under the literal ``prefix``."""
    return _NAMESPACES[bool(prefix)], _prefix_params(prefix)
