"""Row-level security DDL for PostgreSQL, used by the migrations and the role set-up."""

from __future__ import annotations

import re

from persistence.errors import ConfigurationError

__all__ = [
    "SCOPE_POLICIES",
    "SCOPE_SETTING",
    "TENANT_SETTING",
    "disable_tenant_rls",
    "enable_scope_rls",
    "enable_tenant_rls",
    "runtime_role_sql",
    "scope_policies",
]

#: The transaction-local setting the policies of migrations 0001-0009 compared
#: ``tenant_id`` with (anyone could set it: migration 0010 replaced them).
TENANT_SETTING = "persistence.tenant_id"
#: The transaction-local setting holding the signed scope token (migration 0010) that
#: ``persistence_scope()`` verifies for every policy.
SCOPE_SETTING = "persistence.scope"
#: The policies of a table under scope tokens, one per command.
SCOPE_POLICIES = ("scope_read", "scope_insert", "scope_update", "scope_delete")
_CURRENT_TENANT = f"NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def enable_tenant_rls(table: str, column: str = "tenant_id") -> list[str]:
    """SQL that turns on FORCEd RLS for ``table``.

    ``tenant_isolation`` lets a row be read or written only while the transaction's
    tenant setting equals its ``column``; ``owner_access`` lets the role running the
    migration (the table owner: migrations and tenant administration) see everything.
    """
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} FOR ALL "
        f"USING ({column} = {_CURRENT_TENANT}) WITH CHECK ({column} = {_CURRENT_TENANT})",
        f"CREATE POLICY owner_access ON {table} FOR ALL TO CURRENT_USER "
        "USING (true) WITH CHECK (true)",
    ]


def _scope(key: str, *, writing: bool) -> str:
    """``key`` (a column, or a row of two) equals the verified scope's: the sub-select
    is uncorrelated, so PostgreSQL runs it once per statement (an InitPlan)."""
    call = f"persistence_scope({'true' if writing else 'false'})"
    picked = "s[1], s[2]" if key.startswith("(") else "s[1]"
    return f"{key} = (SELECT {picked} FROM {call} AS s)"


def scope_policies(table: str, key: str) -> list[str]:
    """The policies of ``table`` (migration 0010 and later) whose rows belong to the
    scope ``key`` names: ``(tenant_id, workspace_id)`` for a workspace's rows,
    ``tenant_id`` for a tenant's. Reads need the scope, writes a read-write scope (a
    read-only one raises 25006 on any write)."""
    read, write = _scope(key, writing=False), _scope(key, writing=True)
    return [
        f"CREATE POLICY scope_read ON {table} FOR SELECT USING ({read})",
        f"CREATE POLICY scope_insert ON {table} FOR INSERT WITH CHECK ({write})",
        f"CREATE POLICY scope_update ON {table} FOR UPDATE USING ({write}) WITH CHECK ({write})",
        f"CREATE POLICY scope_delete ON {table} FOR DELETE USING ({write})",
    ]


def enable_scope_rls(table: str, key: str = "(tenant_id, workspace_id)") -> list[str]:
    """SQL that turns on FORCEd RLS for a new ``table`` under scope tokens (migration 0010
    on): :func:`scope_policies` and ``owner_access`` (see :func:`enable_tenant_rls`)."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        *scope_policies(table, key),
        f"CREATE POLICY owner_access ON {table} FOR ALL TO CURRENT_USER "
        "USING (true) WITH CHECK (true)",
    ]


def disable_tenant_rls(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS owner_access ON {table}",
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]


def quote_ident(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ConfigurationError(
            f"invalid role name {name!r}: use letters, digits and '_', at most 63 characters"
        )
    return f'"{name}"'


def runtime_role_sql(
    role: str,
    *,
    admin_tables: list[str],
    data_tables: list[str],
    password: str | None = None,
    create: bool = True,
) -> list[str]:
    """The one-time SQL that creates the runtime role and grants it what services need.

    The role may log in; it is not a superuser, cannot bypass RLS and owns nothing.
    It reads ``admin_tables`` (tenants, workspaces: through RLS, only its own tenant)
    and reads and writes ``data_tables``; it enters a scope through
    ``persistence_enter(token)``, with a token signed by a scope key it cannot read.
    It may not create temporary tables (``TEMPORARY`` is taken from PUBLIC on the
    database). Idempotent: run it again after every upgrade.
    """
    ident = quote_ident(role)
    statements: list[str] = []
    if create:
        literal = "'" + role + "'"
        attrs = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        statements.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"{literal}) THEN CREATE ROLE {ident} {attrs}; END IF; END $$"
        )
    if password is not None:
        escaped = password.replace("'", "''")
        statements.append(f"ALTER ROLE {ident} PASSWORD '{escaped}'")
    statements += [
        f"GRANT USAGE ON SCHEMA {{schema}} TO {ident}",
        # (the entry of migration 0010 on; before it, the one by slugs)
        "DO $$ BEGIN IF to_regprocedure('persistence_enter(text)') IS NOT NULL THEN "
        f"GRANT EXECUTE ON FUNCTION persistence_enter(text) TO {ident}; ELSE "
        f"GRANT EXECUTE ON FUNCTION persistence_enter(text, text) TO {ident}; END IF; END $$",
    ]
    if admin_tables:
        statements.append(f"GRANT SELECT ON {', '.join(admin_tables)} TO {ident}")
    if data_tables:
        statements.append(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(data_tables)} TO {ident}"
        )
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {{schema}} TO {ident}")
    statements += _no_temporary_tables(role)
    return statements


def _no_temporary_tables(role: str) -> list[str]:
    """Take ``TEMPORARY`` on the database from PUBLIC and the role, then check it is
    gone: a temporary table is searched before every schema, so one named like ours
    would stand in for it in the role's own statements (the database's owner keeps
    the privilege; other roles that relied on PUBLIC's lose it)."""
    literal = "'" + role.replace("'", "''") + "'"
    database = "quote_ident(current_database())"
    revoke = f"EXECUTE 'REVOKE TEMPORARY ON DATABASE ' || {database} || ' FROM '"
    return [
        f"DO $$ BEGIN {revoke} || 'PUBLIC'; {revoke} || quote_ident({literal}); END $$",
        f"DO $$ BEGIN IF has_database_privilege({literal}, current_database(), 'TEMPORARY') "
        "THEN RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', MESSAGE = "
        f"'permission denied: the runtime role ' || quote_ident({literal}) || ' may still "
        f"create temporary tables in database ' || {database} || ' (granted by a role other "
        f"than this one): have its owner run REVOKE TEMPORARY ON DATABASE ' || {database} "
        f"|| ' FROM PUBLIC, ' || quote_ident({literal}); END IF; END $$",
    ]
