"""Begin a unit of work's transaction and enter its tenant in one round trip (PostgreSQL).

psycopg opens a transaction with its own ``BEGIN`` round trip before the first
statement (even in pipeline mode, where it syncs right after ``BEGIN``). Every unit
of work starts with ``BEGIN`` then ``persistence_enter()``, so :func:`enter` switches
the idle connection to autocommit, sends ``BEGIN`` and the call together in one
query, and leaves the explicit transaction open. psycopg's ``commit()`` and
``rollback()`` act on the server's transaction status, not on the autocommit flag,
so the transaction ends as usual; the pool's checkin turns autocommit off again
(``persistence._pool``) before anyone else gets the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection

from persistence._executor import pooled_cursor, raise_translated
from persistence.errors import ConfigurationError
from persistence.records import TenantRecord, WorkspaceRecord

__all__ = [
    "enter",
    "enter_admin",
    "entry_ids",
    "tenant_record",
    "workspace_record",
]

_ENTER = "SELECT * FROM persistence_enter(%s, %s)"
_BEGIN_ENTER = "BEGIN; " + _ENTER
# A read-only unit of work: one snapshot for all its reads, writes refused.
_BEGIN_READ_ONLY = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
_SET_READ_ONLY = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
_CURSOR = "persistence_enter_cursor"
# Administration needs the role that owns the tables (row-level security hides every
# tenant from any other role but a superuser); 42P01 on 'tenants' means no migrations.
_ADMIN_CHECK = (
    "SELECT current_user, pg_has_role(current_user, relowner, 'USAGE') "
    "FROM pg_class WHERE oid = 'tenants'::regclass"
)
# The columns persistence_enter() returns (migration 0001), in order.
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


# The entry query with its slugs bound, per (query, tenant, workspace): binding them
# client-side (quoting, escaping) costs as much client CPU as the rest of the query.
_RENDERED: dict[tuple[str, str, str], str] = {}
_RENDERED_MAX = 4096


def _rendered(cursor: ClientCursor[Any], query: str, tenant: str, workspace: str) -> str:
    key = (query, tenant, workspace)
    found = _RENDERED.get(key)
    if found is None:
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()  # bounded: a process serving many tenants starts over
        found = _RENDERED[key] = cursor.mogrify(query, (tenant, workspace))
    return found


def enter(
    connection: Connection, tenant: str, workspace: str, *, read_only: bool = False
) -> dict[str, Any] | None:
    """``BEGIN`` + ``persistence_enter(tenant, workspace)`` in one round trip; its row.

    Both go in one simple-protocol query, the slugs bound client-side by psycopg's
    ``ClientCursor`` (they are validated slugs, and the cursor quotes them anyway) once
    per tenant and workspace (:func:`_rendered`): cheaper on the client than a pipeline
    of two extended-protocol statements. Runs on
    the unit of work's own driver connection. A driver error is translated by
    :func:`persistence._executor.raise_translated`, and a broken connection is
    invalidated, not pooled.
    """
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    try:
        if driver.pgconn.transaction_status == TransactionStatus.IDLE:
            driver.autocommit = True
        if not driver.autocommit:  # (a transaction already open: not from our pool)
            query = _SET_READ_ONLY + _ENTER if read_only else _ENTER
        else:
            query = _BEGIN_READ_ONLY + _ENTER if read_only else _BEGIN_ENTER
        cursor: ClientCursor[Any] = pooled_cursor(connection, _CURSOR, ClientCursor)
        cursor.execute(_rendered(cursor, query, tenant, workspace))
        while cursor.nextset():  # the entry row comes with the last result
            pass
        row = cursor.fetchone()
        return None if row is None else dict(zip(_ENTRY_COLUMNS, row, strict=True))
    except psycopg.Error as exc:
        raise_translated(connection, _ENTER, (tenant, workspace), exc)


def enter_admin(connection: Connection, url: str) -> None:
    """``BEGIN`` an admin unit of work on ``connection`` and check, in the same round trip,
    that its role may administer: ConfigurationError naming ``url`` if not.

    psycopg would send ``BEGIN`` on its own before the first statement, in a round trip
    of its own: sent here instead, it costs nothing more, and a dead pooled connection
    shows before any statement of the caller's (``persistence._connect.begin`` then
    tries another). Autocommit is left on, as by :func:`enter`.
    """
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    try:
        if driver.pgconn.transaction_status == TransactionStatus.IDLE:
            driver.autocommit = True
        cursor: ClientCursor[Any] = pooled_cursor(connection, _CURSOR, ClientCursor)
        cursor.execute("BEGIN; " + _ADMIN_CHECK if driver.autocommit else _ADMIN_CHECK)
        while cursor.nextset():
            pass
        role, may_administer = cursor.fetchone() or (None, False)
    except psycopg.Error as exc:
        raise_translated(connection, _ADMIN_CHECK, (), exc)
    if not may_administer:
        raise ConfigurationError(
            f"role {role!r} does not own the persistence tables, so it cannot administer "
            f"tenants (row-level security hides them from it): use the owner URL "
            f"(owner_database_url / PERSISTENCE_OWNER_DATABASE_URL) for db.admin(); "
            f"connected with {url}"
        )


def entry_ids(m: Mapping[Any, Any]) -> tuple[Any, Any]:
    """``(tenant_id, workspace_id)`` of an entry row, as UUIDs."""
    return _uuid(m["tenant_id"]), _uuid(m["workspace_id"])


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


def _uuid(value: Any) -> Any:
    import uuid

    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _utc(value: Any) -> Any:
    """A timestamp of the entry row in UTC (SQLite returns it as ISO text)."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
