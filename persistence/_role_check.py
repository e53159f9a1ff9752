"""Refuse tenant units of work on a PostgreSQL role that row-level security does not bind.

A superuser or ``BYPASSRLS`` role skips every policy, and the owner of the tables (or
a member of it) passes the ``owner_access`` policy: on any of them every tenant's rows
are visible and writable, and nothing fails to warn you. So each new pooled connection
of the runtime engine asks once, in one query, who it is (:func:`check_on_connect`)
and the pool entry keeps the verdict; a tenant unit of work reads it from there
(:func:`require_rls`: a dictionary lookup, no round trip) and refuses such a role with
the fix. Administration and migrations do not look: they are meant to run as the owner.
``Settings.allow_rls_bypass`` skips the check, for development on one superuser URL.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import ConnectionPoolEntry

from persistence._blocking import blocking
from persistence._executor import raise_translated
from persistence.errors import ConfigurationError

__all__ = ["bound", "check_on_connect", "require_rls", "require_rls_async"]

_VERDICT = "persistence_rls_verdict"
# Not checked yet, or checked before the tables existed (check again before entering).
_UNKNOWN = "unknown"
_BOUND = ""  # row-level security applies to this role
# MEMBER, not USAGE: a member of the owner without INHERIT can still SET ROLE to it.
_CHECK = """
SELECT current_user, r.rolsuper, r.rolbypassrls, c.oid IS NOT NULL,
       coalesce(pg_has_role(current_user, c.relowner, 'MEMBER'), false),
       pg_get_userbyid(c.relowner)
FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('tenants')
WHERE r.rolname = current_user
"""


def check_on_connect(engine: Engine) -> None:
    """Record, on every new connection of ``engine``, whether RLS binds its role."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        try:
            record.info[_VERDICT] = _verdict(blocking(dbapi_conn))
        except psycopg.Error:
            record.info[_VERDICT] = _UNKNOWN  # asked again, errors translated, on entering


def bound(info: dict[Any, Any]) -> bool:
    """Whether the pool record ``info`` says RLS binds its connection's role (checked
    on connect: then :func:`require_rls` has nothing to ask)."""
    return bool(info.get(_VERDICT, _UNKNOWN) == _BOUND)


async def require_rls_async(connection: AsyncConnection) -> None:
    """:func:`require_rls` for an asyncio connection (the check, when it must be asked
    again, runs inside SQLAlchemy's greenlet, like the pool's own hooks)."""
    sync = connection.sync_connection
    if sync is not None and sync.connection.info.get(_VERDICT, _UNKNOWN) == _BOUND:
        return
    await connection.run_sync(require_rls)


def require_rls(connection: Connection) -> None:
    """Raise ConfigurationError unless row-level security binds ``connection``'s role.

    Costs a round trip only on a connection whose check could not conclude (it was
    opened before the migrations created the tables, or the check failed).
    """
    info = connection.connection.info
    verdict = info.get(_VERDICT, _UNKNOWN)
    if verdict == _UNKNOWN:
        driver: Any = connection.connection.driver_connection
        try:
            verdict = info[_VERDICT] = _verdict(blocking(driver))
        except psycopg.Error as exc:
            raise_translated(connection, _CHECK, (), exc)
    # Still unknown: the tables do not exist yet; entering says the migrations are missing.
    if verdict and verdict != _UNKNOWN:
        raise ConfigurationError(
            f"refusing a tenant unit of work: the database role {verdict}, so row-level "
            "security would not isolate tenants. Create the runtime role with `persistence "
            "db create-runtime-role NAME` and use it as the runtime URL "
            "(PERSISTENCE_DATABASE_URL), the owner URL (PERSISTENCE_OWNER_DATABASE_URL) for "
            "migrations and administration; for development only, opt in with "
            "PERSISTENCE_ALLOW_RLS_BYPASS=true"
        )


def _verdict(driver: psycopg.Connection[Any]) -> str:
    """Why RLS does not bind the connection's role; ``_BOUND`` if it does."""
    idle = driver.pgconn.transaction_status == TransactionStatus.IDLE
    autocommit = driver.autocommit
    if idle:
        driver.autocommit = True  # no transaction to end afterwards: one round trip
    try:
        row = driver.execute(_CHECK).fetchone()
    finally:
        if idle:
            driver.autocommit = autocommit
    if row is None:  # current_user always has a pg_roles row
        return _UNKNOWN
    user, superuser, bypassrls, tables, owner, owner_name = row
    if superuser:
        return f"{user!r} is a superuser"
    if bypassrls:
        return f"{user!r} has BYPASSRLS"
    if owner and owner_name == user:
        return f"{user!r} owns the tenant tables"
    if owner:
        return f"{user!r} is a member of {owner_name!r}, the owner of the tenant tables"
    return _BOUND if tables else _UNKNOWN
