"""Scopes the database verifies: signed scope tokens, workspace isolation, read-only scopes.

Until 0009 every policy compared ``tenant_id`` with the setting ``persistence.tenant_id``,
which any SQL on a runtime connection could set, and ``persistence_enter(tenant,
workspace)`` set it for any slug. From here:

* ``scope_keys`` holds the scope signing keys (their HMAC pads), readable by the owner
  only (nothing is granted on it to anyone else); the upgrade adds a random ``auto``
  key, which a Database with the owner URL signs with when no ``scope_key`` is set.
* ``persistence_enter(token)`` takes a scope token signed with one of those keys
  (``persistence.scopes``), checks it (signature, key not retired, expiry), resolves a
  token by slug, and returns the entry row as before; when the tenant is active and the
  workspace exists it sets ``persistence.scope`` for the transaction to the token by id
  (signing it again itself when it came by slug), and returns the schema its tables are
  in, which the caller pins ``search_path`` to for the rest of the transaction.
* ``persistence_scope(writing)`` is what every policy trusts: it verifies the token in
  ``persistence.scope`` (signature, key, expiry, a token by id), that its tenant is
  active and its workspace there, and returns ``[tenant id, workspace id]``, or NULL
  when no scope is set (zero rows); ``writing`` and a read-only token raise 25006. A
  forged, truncated or expired token raises (PS001, PS002), one of a suspended tenant
  PS003, one whose tenant or workspace is gone PS004. Policies call it in an
  uncorrelated sub-select: an InitPlan, once per statement, not per row.
* Policies per command (``scope_read``/``scope_insert``/``scope_update``/``scope_delete``)
  replace ``tenant_isolation``: tables with a ``workspace_id`` compare (tenant_id,
  workspace_id) with the scope's, ``tenants`` its id, ``workspaces`` (tenant_id, id),
  the tenant-wide tables (leases, fences, LangGraph's store and retention) tenant_id.
  ``owner_access`` stays: administration and migrations as the owner.

EXECUTE on the new entry function goes to every role that had it on the old one. The
downgrade restores 0009's policies, function and grants (scope keys are dropped).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime, utcnow
from persistence.repositories.scope_keys import AUTO_KEY
from persistence.rls import SCOPE_POLICIES, scope_policies
from persistence.scopes import new_key

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRY_COLUMNS = """
    tenant_id uuid, tenant_slug varchar, tenant_name varchar, tenant_status varchar,
    tenant_created_at timestamptz, tenant_updated_at timestamptz,
    workspace_id uuid, workspace_slug varchar, workspace_name varchar,
    workspace_created_at timestamptz, workspace_updated_at timestamptz"""

# A token's form (persistence.scopes): nine fields, version p1; a kind and its scope by
# id ('i': 32 hex digits each, all the policies accept) or by slug ('s', the entry only).
# Short patterns only: PostgreSQL's regex engine takes tens of microseconds over one of
# the whole token, and a valid signature vouches for the rest of its form (we made it).
_FORMED = "cardinality({p}) = 9 AND {p}[1] = 'p1' AND ({p}[4] || {p}[5]) ~ '^[0-9a-f]{{64}}$'"
_FORMED_ANY = (
    "cardinality({p}) = 9 AND {p}[1] = 'p1' AND (({p}[3] = 'i' AND ({p}[4] || {p}[5]) "
    "~ '^[0-9a-f]{{64}}$') OR ({p}[3] = 's' AND {p}[4] ~ '^[a-z0-9-]{{1,63}}$' "
    "AND {p}[5] ~ '^[a-z0-9-]{{1,63}}$'))"
)
# HMAC-SHA256 of the message m with the key's pads (scope_keys).
_HMAC = "encode(sha256(k.outer_pad || sha256(k.inner_pad || convert_to({m}, 'UTF8'))), 'hex')"
_INVALID = "RAISE EXCEPTION USING ERRCODE = 'PS001', MESSAGE = 'persistence: {why}'"
_EXPIRED = (
    "RAISE EXCEPTION USING ERRCODE = 'PS002', MESSAGE = 'persistence: the scope token has expired'"
)

# After the key's look-up (v_ok: whether the signature matched): refused unless signed by
# a key not retired and not expired on the database's clock.
_SIGNED_AND_LIVE = f"""IF v_ok IS NOT TRUE THEN
        {_INVALID.format(why="the scope token''s signature is not valid")};
    END IF;
    IF v_parts[7]::bigint <= extract(epoch FROM statement_timestamp()) THEN
        {_EXPIRED};
    END IF;"""

SCOPE_FUNCTION = f"""
CREATE FUNCTION persistence_scope(p_writing boolean) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = {{schema}}, pg_temp
AS $$
DECLARE
    v_token text := current_setting('persistence.scope', true);
    v_parts text[];
    v_ok boolean;
    v_status varchar;
    v_there boolean;
BEGIN
    IF v_token IS NULL OR v_token = '' THEN
        RETURN NULL;
    END IF;
    v_parts := string_to_array(v_token, '.');
    IF NOT coalesce({_FORMED.format(p="v_parts")} AND v_parts[3] = 'i', false) THEN
        {_INVALID.format(why="malformed scope token")};
    END IF;
    SELECT {_HMAC.format(m="left(v_token, -65)")} = v_parts[9], t.status, w.id IS NOT NULL
        INTO v_ok, v_status, v_there
        FROM scope_keys k
        LEFT JOIN tenants t ON t.id = v_parts[4]::uuid
        LEFT JOIN workspaces w ON w.tenant_id = t.id AND w.id = v_parts[5]::uuid
        WHERE k.id = v_parts[2] AND k.retired_at IS NULL;
    {_SIGNED_AND_LIVE}
    IF NOT v_there THEN
        RAISE EXCEPTION USING ERRCODE = 'PS004', MESSAGE = 'persistence: the scope''s '
            || 'tenant or workspace no longer exists (deleted, or deleted and created again)';
    END IF;
    IF v_status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = 'PS003', MESSAGE = 'persistence: the scope''s '
            || 'tenant is suspended';
    END IF;
    IF p_writing AND v_parts[6] = 'ro' THEN
        RAISE EXCEPTION USING ERRCODE = '25006',
            MESSAGE = 'persistence: the scope is read-only';
    END IF;
    RETURN ARRAY[v_parts[4]::uuid, v_parts[5]::uuid];
END
$$
"""

ENTER_FUNCTION = f"""
CREATE FUNCTION persistence_enter(p_token text)
RETURNS TABLE ({ENTRY_COLUMNS}, search_path text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {{schema}}, pg_temp
AS $$
DECLARE
    v_parts text[];
    v_ok boolean;
    v_tenant uuid;
    v_workspace uuid;
    v_message text;
    v_scope text;
BEGIN
    PERFORM set_config('persistence.scope', '', true);
    v_parts := string_to_array(p_token, '.');
    IF p_token IS NULL OR NOT coalesce({_FORMED_ANY.format(p="v_parts")}, false) THEN
        {_INVALID.format(why="malformed scope token")};
    END IF;
    SELECT {_HMAC.format(m="left(p_token, -65)")} = v_parts[9] INTO v_ok
        FROM scope_keys k WHERE k.id = v_parts[2] AND k.retired_at IS NULL;
    {_SIGNED_AND_LIVE}
    IF v_parts[3] = 'i' THEN
        v_tenant := v_parts[4]::uuid;
        v_workspace := v_parts[5]::uuid;
    ELSE
        SELECT t.id, w.id INTO v_tenant, v_workspace FROM tenants t
            LEFT JOIN workspaces w ON w.tenant_id = t.id AND w.slug = v_parts[5]
            WHERE t.slug = v_parts[4];
    END IF;
    RETURN QUERY
        SELECT t.id, t.slug, t.name, t.status, t.created_at, t.updated_at,
               w.id, w.slug, w.name, w.created_at, w.updated_at,
               quote_ident(current_schema()) || ', pg_temp'
        FROM tenants t
        LEFT JOIN workspaces w ON w.tenant_id = t.id AND w.id = v_workspace
        WHERE t.id = v_tenant AND t.status = 'active';
    IF NOT FOUND THEN  -- a suspended tenant: its id and status, nothing of its data
        RETURN QUERY
            SELECT t.id, NULL::varchar, NULL::varchar, t.status, NULL::timestamptz,
                   NULL::timestamptz, NULL::uuid, NULL::varchar, NULL::varchar,
                   NULL::timestamptz, NULL::timestamptz, NULL::text
            FROM tenants t WHERE t.id = v_tenant;
        RETURN;
    END IF;
    IF v_workspace IS NULL THEN
        RETURN;
    END IF;
    IF v_parts[3] = 'i' THEN
        v_scope := p_token;
    ELSE
        v_message := array_to_string(ARRAY[v_parts[1], v_parts[2], 'i',
            replace(v_tenant::text, '-', ''), replace(v_workspace::text, '-', ''),
            v_parts[6], v_parts[7], v_parts[8]], '.');
        SELECT v_message || '.' || {_HMAC.format(m="v_message")} INTO v_scope
            FROM scope_keys k WHERE k.id = v_parts[2];
    END IF;
    PERFORM set_config('persistence.scope', v_scope, true);
END
$$
"""

# 0001's entry function, for the downgrade.
OLD_ENTER_FUNCTION = f"""
CREATE FUNCTION persistence_enter(p_tenant text, p_workspace text)
RETURNS TABLE ({ENTRY_COLUMNS})
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {{schema}}, pg_temp
AS $$
BEGIN
    PERFORM set_config('persistence.tenant_id', '', true);
    RETURN QUERY
        SELECT t.id, t.slug, t.name, t.status, t.created_at, t.updated_at,
               w.id, w.slug, w.name, w.created_at, w.updated_at
        FROM tenants t
        LEFT JOIN workspaces w ON w.tenant_id = t.id AND w.slug = p_workspace
        WHERE t.slug = p_tenant;
    PERFORM set_config('persistence.tenant_id', t.id::text, true)
        FROM tenants t WHERE t.slug = p_tenant AND t.status = 'active';
END
$$
"""
OLD_SETTING = "NULLIF(current_setting('persistence.tenant_id', true), '')::uuid"

# The tables of 0009 under row-level security, by what their rows belong to.
WORKSPACE_TABLES = (
    "artifacts",
    "lg_blobs",
    "lg_channels",
    "lg_checkpoints",
    "lg_threads",
    "lg_writes",
    "run_history",
    "run_values",
    "run_workers",
    "runs",
    "state_checkpoints",
    "state_heads",
    "state_tags",
    "state_versions",
    "store_items",
    "stores",
    "workflow_revisions",
    "workflows",
)
TENANT_TABLES = ("fences", "leases", "lg_retention", "lg_store_items")
KEYS = {
    **{table: "(tenant_id, workspace_id)" for table in WORKSPACE_TABLES},
    **{table: "tenant_id" for table in TENANT_TABLES},
    "tenants": "id",
    "workspaces": "(tenant_id, id)",
}


def _grantees(signature: str) -> list[str]:
    """Roles other than the owner granted EXECUTE on the function ``signature``."""
    rows = op.get_bind().exec_driver_sql(
        "SELECT quote_ident(pg_get_userbyid(a.grantee)) FROM pg_proc p, "
        "aclexplode(p.proacl) a WHERE p.oid = to_regprocedure(%(f)s) "
        "AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0",
        {"f": signature},
    )
    return [row[0] for row in rows]


def upgrade() -> None:
    op.create_table(
        "scope_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("inner_pad", sa.LargeBinary(), nullable=False),
        sa.Column("outer_pad", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scope_keys")),
    )
    # The key a Database with the owner URL signs with when no scope_key is set: a
    # database works at once (services set their own key: docs/tenancy.md).
    inner, outer = new_key(AUTO_KEY).pads()
    op.get_bind().execute(
        sa.text(
            "INSERT INTO scope_keys (id, inner_pad, outer_pad, created_at) "
            "VALUES (:id, :inner, :outer, :now)"
        ).bindparams(sa.bindparam("now", type_=UTCDateTime())),
        {"id": AUTO_KEY, "inner": inner, "outer": outer, "now": utcnow()},
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    grantees = _grantees("persistence_enter(text, text)")
    op.execute("REVOKE ALL ON scope_keys FROM PUBLIC")
    op.execute(SCOPE_FUNCTION.replace("{schema}", schema))
    op.execute(ENTER_FUNCTION.replace("{schema}", schema))
    op.execute("REVOKE ALL ON FUNCTION persistence_enter(text) FROM PUBLIC")
    for role in grantees:
        op.execute(f"GRANT EXECUTE ON FUNCTION persistence_enter(text) TO {role}")
    op.execute("DROP FUNCTION persistence_enter(text, text)")
    for table, key in KEYS.items():
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        for statement in scope_policies(table, key):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
        grantees = _grantees("persistence_enter(text)")
        for table in KEYS:
            for policy in SCOPE_POLICIES:
                op.execute(f"DROP POLICY {policy} ON {table}")
            column = "id" if table == "tenants" else "tenant_id"
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} FOR ALL USING ({column} = "
                f"{OLD_SETTING}) WITH CHECK ({column} = {OLD_SETTING})"
            )
        op.execute(OLD_ENTER_FUNCTION.replace("{schema}", schema))
        op.execute("REVOKE ALL ON FUNCTION persistence_enter(text, text) FROM PUBLIC")
        for role in grantees:
            op.execute(f"GRANT EXECUTE ON FUNCTION persistence_enter(text, text) TO {role}")
        op.execute("DROP FUNCTION persistence_enter(text)")
        op.execute("DROP FUNCTION persistence_scope(boolean)")
    op.drop_table("scope_keys")
