"""Tenants and workspaces, row-level security and the tenant entry function.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime
from persistence.rls import TENANT_SETTING, disable_tenant_rls, enable_tenant_rls

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Runs as the owner: returns the tenant (and, when it exists, the workspace) named by
# slug and, when the tenant is active, sets the transaction-local tenant setting that
# every RLS policy compares with. One round trip starts a unit of work.
ENTER_FUNCTION = f"""
CREATE FUNCTION persistence_enter(p_tenant text, p_workspace text)
RETURNS TABLE (
    tenant_id uuid, tenant_slug varchar, tenant_name varchar, tenant_status varchar,
    tenant_created_at timestamptz, tenant_updated_at timestamptz,
    workspace_id uuid, workspace_slug varchar, workspace_name varchar,
    workspace_created_at timestamptz, workspace_updated_at timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {{schema}}, pg_temp
AS $$
BEGIN
    PERFORM set_config('{TENANT_SETTING}', '', true);
    RETURN QUERY
        SELECT t.id, t.slug, t.name, t.status, t.created_at, t.updated_at,
               w.id, w.slug, w.name, w.created_at, w.updated_at
        FROM tenants t
        LEFT JOIN workspaces w ON w.tenant_id = t.id AND w.slug = p_workspace
        WHERE t.slug = p_tenant;
    PERFORM set_config('{TENANT_SETTING}', t.id::text, true)
        FROM tenants t WHERE t.slug = p_tenant AND t.status = 'active';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_tenants_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )
    op.create_table(
        "workspaces",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workspaces_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("tenant_id", "slug", name=op.f("uq_workspaces_tenant_id_slug")),
    )
    if op.get_bind().dialect.name == "postgresql":
        schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
        for statement in enable_tenant_rls("tenants", column="id"):
            op.execute(statement)
        for statement in enable_tenant_rls("workspaces"):
            op.execute(statement)
        op.execute(ENTER_FUNCTION.replace("{schema}", schema))
        op.execute("REVOKE ALL ON FUNCTION persistence_enter(text, text) FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS persistence_enter(text, text)")
        for table in ("workspaces", "tenants"):
            for statement in disable_tenant_rls(table):
                op.execute(statement)
    op.drop_table("workspaces")
    op.drop_table("tenants")
