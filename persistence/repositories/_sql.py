"""Building blocks every repository's statements share: the scope's parameters, the one
tenant (and workspace) filter, and the upsert construct."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Uuid, and_, bindparam, select
from sqlalchemy.dialects import postgresql

from persistence.models.base import UTCDateTime

__all__ = ["NOW", "TENANT", "WORKSPACE", "bound_row", "scoped", "upsert"]

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
