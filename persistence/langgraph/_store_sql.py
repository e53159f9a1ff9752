"""The store's statements, and its filters: a filter's comparisons respect JSON types (a
number compares as a number, a string as a string, ``True`` is not ``1``), in SQL on
both backends (PostgreSQL reads the stored text as ``jsonb``, SQLite with ``json_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from persistence._compiled import Statement
from persistence.codecs import dump_json
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.langgraph import LgStoreItem
from persistence.repositories._sql import TENANT, upsert

__all__ = [
    "DELETE",
    "GET",
    "ITEMS",
    "PUT",
    "item_filter",
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
    """Items whose namespace is ``prefix`` or starts with ``prefix`` and a ``.``."""
    if not prefix:
        return _c.tenant_id == TENANT
    under = func.substr(_c.namespace, 1, len(prefix) + 1) == prefix + "."
    return or_(_c.namespace == prefix, under)


def search(prefix: str, where: list[Any], limit: int, offset: int) -> Any:
    return (
        select(*_ROW)
        .where(_c.tenant_id == TENANT, _LIVE, _prefix(prefix), *where)
        .order_by(_c.updated_at.desc(), _c.namespace, _c.key)
        .limit(limit)
        .offset(offset)
    )


def namespaces(prefix: str) -> Any:
    """The distinct namespaces of live items under the literal ``prefix``."""
    return select(_c.namespace).distinct().where(_c.tenant_id == TENANT, _LIVE, _prefix(prefix))


# -- filters ---------------------------------------------------------------------------

_ORDER = {"$gt": "__gt__", "$gte": "__ge__", "$lt": "__lt__", "$lte": "__le__"}


class _Json:
    """One member of the stored value, as each backend reads it."""

    def __init__(self, path: tuple[str, ...], dialect: str):
        for key in path:
            if not isinstance(key, str):
                raise InvalidTypeError(f"a filter key must be a str, not {type(key).__name__}")
        self.path = path
        self.pg = dialect == "postgresql"

    def _sqlite_path(self) -> Any:
        for key in self.path:
            if '"' in key or "\\" in key:
                raise InvalidInputError(f"filter key {key!r}: '\"' and '\\' are not filterable")
        return bindparam(None, "$" + "".join(f'."{key}"' for key in self.path))

    def _pg(self, *, text: bool = False) -> Any:
        """The member as ``jsonb`` (``->`` all the way), or as text (``->>`` last)."""
        member: Any = func.cast(_c.value, JSONB())
        for n, key in enumerate(self.path):
            last = text and n == len(self.path) - 1
            step = member.op("->>", return_type=Text()) if last else member.op("->")
            member = step(bindparam(None, key))
        return member

    def kind(self) -> Any:
        """The JSON type name: PostgreSQL's ``jsonb_typeof`` names."""
        if self.pg:
            return func.jsonb_typeof(self._pg())
        kind: Any = func.json_type(_c.value, self._sqlite_path())
        for name, pg_name in (("integer", "number"), ("real", "number"), ("text", "string")):
            kind = func.replace(kind, name, pg_name)
        return kind

    def equals(self, value: Any) -> ColumnElement[bool]:
        text = _json(value)
        if self.pg:
            wanted = func.cast(bindparam(None, text), JSONB())
            return cast(ColumnElement[bool], self._pg() == wanted)
        given: Any = bindparam(None, text)
        mine = func.json_extract(_c.value, self._sqlite_path())
        same_kind = self.kind() == _kind(value)
        if isinstance(value, (dict, list)):  # compare as minified JSON text
            return and_(same_kind, func.json(mine) == func.json(given))
        return and_(same_kind, mine == func.json_extract(given, "$"))

    def compare(self, operator: str, value: Any) -> ColumnElement[bool]:
        """``$gt`` and friends: numbers with numbers, strings with strings."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidInputError(f"{operator} compares a number or a string, not {value!r}")
        number = not isinstance(value, str)
        kind = "number" if number else "string"
        if self.pg:
            text = self._pg(text=True)
            member: Any = func.cast(text, Numeric()) if number else text.collate("C")
        else:
            member = func.json_extract(_c.value, self._sqlite_path())
        compared = getattr(member, _ORDER[operator])(bindparam(None, value))
        return and_(self.kind() == kind, compared)


def _json(value: Any) -> str:
    """A filter value as JSON text; refused unless JSON holds it exactly."""
    return dump_json(value, what="filter value").decode()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def item_filter(filter: Mapping[str, Any], dialect: str) -> list[ColumnElement[bool]]:
    """SQL conditions of a store ``filter``: ``{"k": v}`` (``v`` equal as JSON; a dict of
    keys matches the members it names), or ``{"k": {"$op": v}}`` with ``$eq``, ``$ne``,
    ``$gt``, ``$gte``, ``$lt``, ``$lte``."""
    if not isinstance(filter, Mapping):
        raise InvalidTypeError("filter must be a mapping")
    return [_condition((key,), value, dialect) for key, value in filter.items()]


def _condition(path: tuple[str, ...], value: Any, dialect: str) -> ColumnElement[bool]:
    member = _Json(path, dialect)
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
        return and_(*(_operator(member, op, v) for op, v in value.items()))
    if isinstance(value, dict):
        return and_(*(_condition((*path, k), v, dialect) for k, v in value.items()))
    return member.equals(value)


def _operator(member: _Json, operator: str, value: Any) -> ColumnElement[bool]:
    if operator == "$eq":
        return member.equals(value)
    if operator == "$ne":
        return not_(func.coalesce(member.equals(value), false()))
    if operator in _ORDER:
        return member.compare(operator, value)
    raise InvalidInputError(
        f"unknown filter operator {operator!r}: use $eq, $ne, $gt, $gte, $lt or $lte"
    )
