"""Building blocks every repository's statements share: the scope's parameters, the one
tenant (and workspace) filter, and the upsert construct."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Uuid, and_, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from persistence.models.base import UTCDateTime

__all__ = [
    "NOW",
    "TENANT",
    "WORKSPACE",
    "ClockMicros",
    "Greatest",
    "bound_row",
    "next_version",
    "scoped",
    "upsert",
]

#: The parameters every statement of one scope takes (``Scope.params()`` gives them).
TENANT = bindparam("tenant_id", type_=Uuid())
WORKSPACE = bindparam("workspace_id", type_=Uuid())
#: The client's UTC time, like every timestamp a repository writes.
NOW = bindparam("now", type_=UTCDateTime())


def scoped(table: Any) -> ColumnElement[bool]:
    """The tenant and workspace filter of a workspace-scoped table."""
    return and_(table.c.tenant_id == TENANT, table.c.workspace_id == WORKSPACE)


def upsert(table: Any) -> Any:
    """``INSERT`` with ``on_conflict_do_nothing`` / ``on_conflict_do_update``: PostgreSQL's
    construct, which SQLite's compiler renders the same way (one form for both backends)."""
    return postgresql.insert(table)


def bound_row(alias: str, **columns: Any) -> Any:
    """A one-row subquery of parameters, each named like its column (``columns``: name to
    type): what a statement reads from a data-modifying CTE on PostgreSQL, bound as values
    on SQLite, which has none."""
    values = (bindparam(name, type_=type_).label(name) for name, type_ in columns.items())
    return select(*values).subquery(alias)


# -- versions of rows the read cache orders (migration 0007) --------------------------


class ClockMicros(FunctionElement[int]):
    """The clock in microseconds since the epoch: PostgreSQL's, or (SQLite, whose clock
    counts milliseconds) the writer's, bound as ``now_us``: every writer of an embedded
    database runs on its machine."""

    type = BigInteger()
    inherit_cache = True


@compiles(ClockMicros, "postgresql")
def _clock_pg(element: Any, compiler: Any, **kw: Any) -> str:
    return "CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT)"


@compiles(ClockMicros, "sqlite")
def _clock_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(bindparam("now_us", type_=BigInteger()), **kw))


class Greatest(FunctionElement[int]):
    """The larger of its arguments (PostgreSQL ``greatest``, SQLite ``max``)."""

    type = BigInteger()
    inherit_cache = True


@compiles(Greatest, "postgresql")
def _greatest_pg(element: Any, compiler: Any, **kw: Any) -> str:
    return f"greatest({compiler.process(element.clauses, **kw)})"


@compiles(Greatest, "sqlite")
def _greatest_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


def next_version(table: Any, insert: Any) -> Any:
    """The ``version`` an upsert's conflict sets: the clock, or one above the row's last
    version when the clock has not moved past it (per row, versions only grow)."""
    return Greatest(insert.excluded.version, table.c.version + 1)
