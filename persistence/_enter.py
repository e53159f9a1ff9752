"""The tenant entry: its statement per backend, its rendered form, and the records built
from its row. ``persistence._begin`` (and its async source) sends it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import String, and_, bindparam, func, literal_column, select

from persistence._compiled import Statement
from persistence.errors import NotFoundError, TenantSuspendedError
from persistence.models.tenancy import Tenant, Workspace
from persistence.records import TenantRecord, WorkspaceRecord
from persistence.rls import SCOPE_SETTING

__all__ = [
    "ADMIN_CHECK",
    "BEGIN",
    "BEGIN_ADMIN",
    "BEGIN_READ_ONLY",
    "ENTRY",
    "HAS_TOKEN_ENTRY",
    "LEGACY_ENTRY",
    "PIPELINED_BEGIN",
    "SCOPE_SET",
    "SET_READ_ONLY",
    "EntryRow",
    "entry_ids",
    "pinned_path",
    "require_entered",
    "tenant_record",
    "workspace_record",
]

# A read-only unit of work: one snapshot for all its reads, writes refused.
BEGIN = "BEGIN; "
BEGIN_READ_ONLY = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
SET_READ_ONLY = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
# Administration needs the role that owns the tables (row-level security hides every
# tenant from any other role but a superuser); 42P01 on 'tenants' means no migrations.
ADMIN_CHECK = (
    "SELECT current_user, pg_has_role(current_user, relowner, 'USAGE') "
    "FROM pg_class WHERE oid = 'tenants'::regclass"
)
BEGIN_ADMIN = "BEGIN; " + ADMIN_CHECK
# The same BEGINs as one statement each, for a pipeline (persistence._deferred).
PIPELINED_BEGIN = {
    False: BEGIN.removesuffix("; ").encode(),
    True: BEGIN_READ_ONLY.removesuffix("; ").encode(),
}
# The columns of the entry row (persistence_enter(), migration 0010), in order.
_ENTRY_COLUMNS = (
    "tenant_id",
    "tenant_slug",
    "tenant_name",
    "tenant_status",
    "tenant_created_at",
    "tenant_updated_at",
    "workspace_id",
    "workspace_slug",
    "workspace_name",
    "workspace_created_at",
    "workspace_updated_at",
)
_ENTRY_INDEX = {column: index for index, column in enumerate(_ENTRY_COLUMNS)}


def _postgres_entry() -> Any:
    """PostgreSQL: ``persistence_enter(token)`` (migration 0010) verifies the scope token,
    sets the verified scope for row-level security and returns the row; the
    ``set_config`` beside it pins ``search_path`` to the tables' schema for the rest of
    the transaction (set in the caller's transaction, not the function's), so that no
    session ``search_path`` changes what the unit of work's statements name."""
    entry = func.persistence_enter(bindparam("token", type_=String())).table_valued(
        *_ENTRY_COLUMNS, "search_path"
    )
    pinned = func.set_config("search_path", entry.c.search_path, True)
    columns = [entry.c[column] for column in _ENTRY_COLUMNS]
    return select(*columns, pinned.label("search_path")).select_from(entry)


def _sqlite_entry() -> Any:
    """SQLite (no row-level security): the same row from the tables themselves."""
    tenant, workspace = Tenant.__table__.c, Workspace.__table__.c
    joined = Tenant.__table__.outerjoin(
        Workspace.__table__,
        and_(workspace.tenant_id == tenant.id, workspace.slug == bindparam("workspace")),
    )
    columns = [tenant[name.removeprefix("tenant_")] for name in _ENTRY_COLUMNS[:6]]
    columns += [workspace[name.removeprefix("workspace_")] for name in _ENTRY_COLUMNS[6:]]
    labelled = [column.label(name) for column, name in zip(columns, _ENTRY_COLUMNS, strict=True)]
    return select(*labelled).select_from(joined).where(tenant.slug == bindparam("tenant"))


def _legacy_entry() -> Any:
    """PostgreSQL before migration 0010: ``persistence_enter(tenant, workspace)`` set
    the tenant for the policies of then (a setting any SQL could set)."""
    entry = func.persistence_enter(
        bindparam("tenant", type_=String()), bindparam("workspace", type_=String())
    ).table_valued(*_ENTRY_COLUMNS)
    return select(*(entry.c[column] for column in _ENTRY_COLUMNS)).select_from(entry)


def _scope_set() -> Any:
    """A known scope's entry (migration 0010): its token and ``search_path`` set for the
    transaction, no function call; the statements' policies verify the token."""
    token, path = bindparam("token", type_=String()), bindparam("search_path", type_=String())
    scope: Any = literal_column(f"'{SCOPE_SETTING}'")
    search_path: Any = literal_column("'search_path'")
    local: Any = literal_column("true")
    return select(func.set_config(scope, token, local), func.set_config(search_path, path, local))


#: The entry of a scope entered before (``persistence._deferred``).
SCOPE_SET = Statement(_scope_set(), "scope_set")


def pinned_path(row: Mapping[Any, Any]) -> str | None:
    """The ``search_path`` a token entry's row pins (None for another row)."""
    if type(row) is EntryRow and row._result.nfields > len(_ENTRY_COLUMNS):
        raw = row._result.get_value(0, len(_ENTRY_COLUMNS))
        return None if raw is None else str(raw.decode())
    return None


#: The entry of a schema not yet at 0010 (a process that runs before the upgrade).
LEGACY_ENTRY = Statement(_legacy_entry(), "enter_legacy")
#: Whether the schema has the token entry (0010): NULL before it.
HAS_TOKEN_ENTRY = "SELECT to_regprocedure('persistence_enter(text)') IS NOT NULL"

#: The tenant entry, one statement per backend (PostgreSQL's is a function of its own).
ENTRY = {
    "postgresql": Statement(_postgres_entry(), "enter"),
    "sqlite": Statement(_sqlite_entry(), "enter"),
}


class EntryRow(Mapping[str, Any]):
    """The entry row as text, each column decoded when first read: a unit of work reads
    the ids and the status; the records (``uow.tenant``) the rest, if anyone asks."""

    __slots__ = ("_result", "_values", "ids")

    def __init__(self, result: Any):
        self._result = result
        self._values: dict[str, Any] = {}
        self.ids: tuple[Any, Any] | None = None  # (entry_ids, once asked for)

    def __getitem__(self, column: str) -> Any:
        found = self._values.get(column, _UNREAD)
        if found is _UNREAD:
            raw = self._result.get_value(0, _ENTRY_INDEX[column])
            found = self._values[column] = None if raw is None else raw.decode()
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(_ENTRY_COLUMNS)

    def __len__(self) -> int:
        return len(_ENTRY_COLUMNS)


_UNREAD = object()


def entry_ids(m: Mapping[Any, Any]) -> tuple[Any, Any]:
    """``(tenant_id, workspace_id)`` of an entry row, as UUIDs."""
    if type(m) is EntryRow:  # (a known scope's row: every unit of work of it asks)
        if m.ids is None:
            m.ids = _uuid(m["tenant_id"]), _uuid(m["workspace_id"])
        return m.ids
    return _uuid(m["tenant_id"]), _uuid(m["workspace_id"])


def require_entered(m: Mapping[Any, Any] | None, tenant: str, workspace: str) -> Mapping[Any, Any]:
    """``m``, the entry row of ``tenant``/``workspace``, if it lets a unit of work in:
    NotFoundError for an unknown tenant or workspace, TenantSuspendedError for a
    suspended tenant."""
    if m is None:
        raise NotFoundError(f"tenant {tenant!r} does not exist")
    if m["tenant_status"] != "active":
        raise TenantSuspendedError(f"tenant {tenant!r} is suspended")
    if m["workspace_id"] is None:
        raise NotFoundError(f"workspace {workspace!r} does not exist in tenant {tenant!r}")
    return m


def tenant_record(m: Mapping[Any, Any]) -> TenantRecord:
    """The tenant of an entry row (see ``Database._enter_scope``)."""
    return TenantRecord.model_construct(
        id=_uuid(m["tenant_id"]),
        slug=m["tenant_slug"],
        name=m["tenant_name"],
        status=m["tenant_status"],
        created_at=_utc(m["tenant_created_at"]),
        updated_at=_utc(m["tenant_updated_at"]),
    )


def workspace_record(m: Mapping[Any, Any]) -> WorkspaceRecord:
    """The workspace of an entry row (see ``Database._enter_scope``)."""
    return WorkspaceRecord.model_construct(
        tenant_id=_uuid(m["tenant_id"]),
        id=_uuid(m["workspace_id"]),
        slug=m["workspace_slug"],
        name=m["workspace_name"],
        created_at=_utc(m["workspace_created_at"]),
        updated_at=_utc(m["workspace_updated_at"]),
    )


# Tenant and workspace ids as UUIDs, per text: parsing one costs more than a look-up, and
# a process serves the same few scopes over and over.
_UUIDS: dict[str, uuid.UUID] = {}


def _uuid(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value
    found = _UUIDS.get(value)
    if found is None:
        if len(_UUIDS) >= 4096:
            _UUIDS.clear()
        found = _UUIDS[value] = uuid.UUID(str(value))
    return found


def _utc(value: Any) -> Any:
    """A timestamp of the entry row in UTC (SQLite returns it as ISO text)."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
