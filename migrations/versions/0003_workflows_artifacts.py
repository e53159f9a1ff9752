"""workflows (with revisions) and artifacts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime
from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("workflows", "workflow_revisions", "artifacts")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "workspace_id"],
        ["workspaces.tenant_id", "workspaces.id"],
        name=op.f(f"fk_{table}_tenant_id_workspaces"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("latest_revision", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _workspace_fk("workflows"),
        sa.PrimaryKeyConstraint("tenant_id", "workspace_id", "name", name=op.f("pk_workflows")),
    )
    op.create_table(
        "workflow_revisions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("revision", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "workspace_id", "name"],
            ["workflows.tenant_id", "workflows.workspace_id", "workflows.name"],
            name=op.f("fk_workflow_revisions_tenant_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "name", "revision", name=op.f("pk_workflow_revisions")
        ),
    )
    op.create_table(
        "artifacts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("user_metadata", sa.JSON(), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        # Last: SQLite keeps a zeroblob at the end of a row unmaterialized, so a large
        # payload is streamed in (blob I/O) without extra copies in memory.
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("kind IN ('bytes', 'str', 'json')", name=op.f("ck_artifacts_kind")),
        _workspace_fk("artifacts"),
        sa.PrimaryKeyConstraint("tenant_id", "workspace_id", "name", name=op.f("pk_artifacts")),
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
