"""The query of ``list()``: checkpoints of the workspace, newest first, by thread,
namespace, id, ``before`` and a metadata filter whose values compare as JSON (a number
as a number, ``True`` as a boolean, never as text)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from persistence.codecs import dump_json
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.langgraph._statements import CHECKPOINT_ROW, CHECKPOINTS
from persistence.repositories._sql import TENANT, WORKSPACE

__all__ = ["Listing", "json_equals", "query"]

_cp = CHECKPOINTS.c


@dataclass(frozen=True, slots=True)
class Listing:
    thread_id: str | None
    ns: str | None
    checkpoint_id: str | None
    before: str | None
    filter: Mapping[str, Any]
    limit: int | None


def _json_text(value: Any, what: str) -> str:
    """``value`` as JSON text; refused unless JSON holds it exactly (a datetime, a tuple,
    NaN would compare as something else)."""
    return dump_json(value, what=what).decode()


def json_equals(column: Any, key: str, value: Any, dialect: str) -> ColumnElement[bool]:
    """``column``'s member ``key`` equals ``value`` as JSON: same type, same value."""
    if not isinstance(key, str):
        raise InvalidTypeError(f"a filter key must be a str, not {type(key).__name__}")
    text = _json_text(value, f"filter value of {key!r}")
    if dialect == "postgresql":
        member = func.cast(column, JSONB()).op("->")(bindparam(None, key))
        return member == func.cast(bindparam(None, text), JSONB())
    if '"' in key or "\\" in key:
        raise InvalidInputError(
            f"filter key {key!r}: a key with '\"' or '\\\\' cannot be filtered on"
        )
    path: Any = bindparam(None, f'$."{key}"')
    given: Any = bindparam(None, text)
    # SQLite's json_type tells 'true' from 1; integer and real compare as numbers.
    kind = func.replace(func.json_type(column, path), "integer", "real")
    wanted = func.replace(func.json_type(given, "$"), "integer", "real")
    same = func.json_extract(column, path) == func.json_extract(given, "$")
    return same & (kind == wanted)


def query(listing: Listing, dialect: str) -> Any:
    where: list[Any] = [_cp.tenant_id == TENANT, _cp.workspace_id == WORKSPACE]
    if listing.thread_id is not None:
        where.append(_cp.thread_id == literal(listing.thread_id))
    if listing.ns is not None:
        where.append(_cp.checkpoint_ns == literal(listing.ns))
    if listing.checkpoint_id is not None:
        where.append(_cp.checkpoint_id == literal(listing.checkpoint_id))
    if listing.before is not None:
        where.append(_cp.checkpoint_id < literal(listing.before))
    for key, value in listing.filter.items():
        where.append(json_equals(_cp["metadata"], key, value, dialect))
    statement = (
        select(*CHECKPOINT_ROW)
        .where(*where)
        .order_by(_cp.checkpoint_id.desc(), _cp.thread_id, _cp.checkpoint_ns)
    )
    if listing.limit is not None:
        statement = statement.limit(listing.limit)
    return statement
