"""The store's filters in SQL: a filter's comparisons respect JSON types (a number
compares as a number, a string as a string, ``True`` is not ``1``), on both backends
(PostgreSQL reads the value's ``jsonb`` column, SQLite the text with its ``json_*`` functions).
Every value is a named parameter, so one statement serves every filter of a shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, Numeric, Text, and_, bindparam, column, false, func, not_
from sqlalchemy.dialects.postgresql import JSONB

from persistence.codecs import dump_json
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.langgraph import LgStoreItem

__all__ = ["Binds", "item_filter"]

_c = LgStoreItem.__table__.c

_ORDER = {"$gt": "__gt__", "$gte": "__ge__", "$lt": "__lt__", "$lte": "__le__"}
#: PostgreSQL: the stored value as ``jsonb``, computed once per write (migration 0009).
_VALUE_JSONB: Any = column("value_jsonb", JSONB())


class Binds:
    """The values of one filter, as named parameters (``f0``, ``f1`` ...), and its shape:
    what its SQL depends on besides them (a statement is built once per shape)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.shape: list[Any] = []

    def __call__(self, value: Any) -> Any:
        name = f"f{len(self.values)}"
        self.values[name] = value
        return bindparam(name, type_=Text() if isinstance(value, str) else None)


class _Json:
    """One member of the stored value, as each backend reads it."""

    def __init__(self, path: tuple[str, ...], dialect: str, binds: Binds):
        for key in path:
            if not isinstance(key, str):
                raise InvalidTypeError(f"a filter key must be a str, not {type(key).__name__}")
        self.path = path
        self.pg = dialect == "postgresql"
        self.binds = binds

    def _sqlite_path(self) -> Any:
        for key in self.path:
            if '"' in key or "\\" in key:
                raise InvalidInputError(f"filter key {key!r}: '\"' and '\\' are not filterable")
        return self.binds("$" + "".join(f'."{key}"' for key in self.path))

    def _pg(self, *, text: bool = False) -> Any:
        """The member as ``jsonb`` (``->`` all the way), or as text (``->>`` last)."""
        member: Any = _VALUE_JSONB
        for n, key in enumerate(self.path):
            last = text and n == len(self.path) - 1
            step = member.op("->>", return_type=Text()) if last else member.op("->")
            member = step(self.binds(key))
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
        composite = isinstance(value, (dict, list))
        self.binds.shape.append(("eq", len(self.path), composite))
        if self.pg:
            wanted = func.cast(self.binds(text), JSONB())
            return cast(ColumnElement[bool], self._pg() == wanted)
        given: Any = self.binds(text)
        mine = func.json_extract(_c.value, self._sqlite_path())
        same_kind = self.kind() == self.binds(_kind(value))
        if composite:  # compare as minified JSON text
            return and_(same_kind, func.json(mine) == func.json(given))
        return and_(same_kind, mine == func.json_extract(given, "$"))

    def compare(self, operator: str, value: Any) -> ColumnElement[bool]:
        """``$gt`` and friends: numbers with numbers, strings with strings."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidInputError(f"{operator} compares a number or a string, not {value!r}")
        number = not isinstance(value, str)
        kind = "number" if number else "string"
        self.binds.shape.append(("cmp", operator, number, len(self.path)))
        if self.pg:
            text = self._pg(text=True)
            member: Any = func.cast(text, Numeric()) if number else text.collate("C")
        else:
            member = func.json_extract(_c.value, self._sqlite_path())
        compared = getattr(member, _ORDER[operator])(self.binds(value))
        return and_(self.kind() == self.binds(kind), compared)


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


def item_filter(filter: Mapping[str, Any], dialect: str, binds: Binds) -> list[ColumnElement[bool]]:
    """SQL conditions of a store ``filter``: ``{"k": v}`` (``v`` equal as JSON; a dict of
    keys matches the members it names), or ``{"k": {"$op": v}}`` with ``$eq``, ``$ne``,
    ``$gt``, ``$gte``, ``$lt``, ``$lte``."""
    if not isinstance(filter, Mapping):
        raise InvalidTypeError("filter must be a mapping")
    return [_condition((key,), value, dialect, binds) for key, value in filter.items()]


def _condition(
    path: tuple[str, ...], value: Any, dialect: str, binds: Binds
) -> ColumnElement[bool]:
    member = _Json(path, dialect, binds)
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
        binds.shape.append(("ops", len(value)))
        return and_(*(_operator(member, op, v) for op, v in value.items()))
    if isinstance(value, dict):
        binds.shape.append(("members", len(value)))
        return and_(*(_condition((*path, k), v, dialect, binds) for k, v in value.items()))
    return member.equals(value)


def _operator(member: _Json, operator: str, value: Any) -> ColumnElement[bool]:
    if operator == "$eq":
        return member.equals(value)
    if operator == "$ne":
        member.binds.shape.append("ne")
        return not_(func.coalesce(member.equals(value), false()))
    if operator in _ORDER:
        return member.compare(operator, value)
    raise InvalidInputError(
        f"unknown filter operator {operator!r}: use $eq, $ne, $gt, $gte, $lt or $lte"
    )
