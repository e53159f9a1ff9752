"""Stores and their items, leases (the SQL lock backend) and fences.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime
from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("stores", "store_items", "leases", "fences")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "stores",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "workspace_id"],
            ["workspaces.tenant_id", "workspaces.id"],
            name=op.f("fk_stores_tenant_id_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "workspace_id", "name", name=op.f("pk_stores")),
    )
    op.create_table(
        "store_items",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("store", sa.String(63), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "workspace_id", "store"],
            ["stores.tenant_id", "stores.workspace_id", "stores.name"],
            name=op.f("fk_store_items_tenant_id_workspace_id_store_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "store", "key_hash", name=op.f("pk_store_items")
        ),
    )
    op.create_table(
        "leases",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        _tenant_fk("leases"),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_leases")),
    )
    op.create_table(
        "fences",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("resource", sa.String(200), nullable=False),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _tenant_fk("fences"),
        sa.PrimaryKeyConstraint("tenant_id", "resource", name=op.f("pk_fences")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in enable_tenant_rls(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in reversed(TABLES):
            for statement in disable_tenant_rls(table):
                op.execute(statement)
    for table in reversed(TABLES):
        op.drop_table(table)
