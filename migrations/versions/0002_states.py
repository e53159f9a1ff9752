"""Versioned agent state: heads, versions, tags and checkpoints, with row-level security.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime
from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("state_heads", "state_versions", "state_tags", "state_checkpoints")


def _scope_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
    ]


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "workspace_id"],
        ["workspaces.tenant_id", "workspaces.id"],
        name=op.f(f"fk_{table}_tenant_id_workspace_id_workspaces"),
        ondelete="CASCADE",
    )


def _payload_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.Column("stored_size", sa.Integer(), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "state_heads",
        *_scope_columns(),
        sa.Column("state_id", sa.String(255), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=True),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("last_version >= 0", name=op.f("ck_state_heads_last_version")),
        _workspace_fk("state_heads"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "state_id", name=op.f("pk_state_heads")
        ),
    )
    op.create_index(
        "ix_state_heads_expires_at", "state_heads", ["tenant_id", "workspace_id", "expires_at"]
    )
    op.create_table(
        "state_versions",
        *_scope_columns(),
        sa.Column("state_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        *_payload_columns(),
        sa.CheckConstraint("version >= 1", name=op.f("ck_state_versions_version")),
        _workspace_fk("state_versions"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "state_id", "version", name=op.f("pk_state_versions")
        ),
    )
    op.create_index(
        "ix_state_versions_expires_at",
        "state_versions",
        ["tenant_id", "workspace_id", "expires_at"],
    )
    op.create_table(
        "state_tags",
        *_scope_columns(),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.Column("state_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        _workspace_fk("state_tags"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "workspace_id", "state_id", "version"],
            [
                "state_versions.tenant_id",
                "state_versions.workspace_id",
                "state_versions.state_id",
                "state_versions.version",
            ],
            name="fk_state_tags_version",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "tag", "state_id", "version", name=op.f("pk_state_tags")
        ),
    )
    op.create_index(
        "ix_state_tags_version",
        "state_tags",
        ["tenant_id", "workspace_id", "state_id", "version"],
    )
    op.create_table(
        "state_checkpoints",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("state_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        *_payload_columns(),
        _workspace_fk("state_checkpoints"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_state_checkpoints")),
        sa.UniqueConstraint(
            "tenant_id",
            "workspace_id",
            "state_id",
            "name",
            name=op.f("uq_state_checkpoints_tenant_id_workspace_id_state_id_name"),
        ),
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
    op.drop_table("state_checkpoints")
    op.drop_index("ix_state_tags_version", table_name="state_tags")
    op.drop_table("state_tags")
    op.drop_index("ix_state_versions_expires_at", table_name="state_versions")
    op.drop_table("state_versions")
    op.drop_index("ix_state_heads_expires_at", table_name="state_heads")
    op.drop_table("state_heads")
