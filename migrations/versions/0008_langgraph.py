"""LangGraph's checkpointer and store (``persistence.langgraph``): threads, checkpoints,
channel versions, deduplicated blobs, pending writes and store items.

``tenant_id`` leads every key, and every table has the same FORCEd row-level security
as the others. Tables only: nothing here touches the rows of earlier revisions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime
from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "lg_retention",
    "lg_threads",
    "lg_checkpoints",
    "lg_channels",
    "lg_blobs",
    "lg_writes",
    "lg_store_items",
)


def _scope(table: str) -> list[Any]:
    return [
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "workspace_id"],
            ["workspaces.tenant_id", "workspaces.id"],
            name=op.f(f"fk_{table}_tenant_id_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
    ]


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(
        "tenant_id", "workspace_id", "thread_id", *columns, name=op.f(f"pk_{table}")
    )


def _threads() -> None:
    op.create_table(
        "lg_threads",
        *_scope("lg_threads"),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("head", sa.Text(), nullable=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _pk("lg_threads", "checkpoint_ns"),
    )


def _checkpoints() -> None:
    op.create_table(
        "lg_checkpoints",
        *_scope("lg_checkpoints"),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("checksum", sa.LargeBinary(32), nullable=False),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _pk("lg_checkpoints", "checkpoint_ns", "checkpoint_id"),
    )
    op.create_index("ix_lg_checkpoints_run", "lg_checkpoints", ["tenant_id", "run_id"])


def _channels_blobs_writes() -> None:
    op.create_table(
        "lg_channels",
        *_scope("lg_channels"),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=True),
        _pk("lg_channels", "checkpoint_ns", "channel", "version"),
    )
    op.create_table(
        "lg_blobs",
        *_scope("lg_blobs"),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        _pk("lg_blobs", "checkpoint_ns", "digest"),
    )
    op.create_table(
        "lg_writes",
        *_scope("lg_writes"),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("checksum", sa.LargeBinary(32), nullable=False),
        sa.Column("task_path", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=True),
        _pk("lg_writes", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
    )


def _store_items() -> None:
    op.create_table(
        "lg_store_items",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("ttl_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_lg_store_items_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "namespace", "key", name=op.f("pk_lg_store_items")),
    )
    op.create_index("ix_lg_store_items_expires", "lg_store_items", ["tenant_id", "expires_at"])


def _retention() -> None:
    op.create_table(
        "lg_retention",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("idle_seconds", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_lg_retention_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_lg_retention")),
    )


def upgrade() -> None:
    _retention()
    _threads()
    _checkpoints()
    _channels_blobs_writes()
    _store_items()
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in enable_tenant_rls(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in reversed(TABLES):
            for statement in disable_tenant_rls(table):
                op.execute(statement)
    op.drop_index("ix_lg_store_items_expires", table_name="lg_store_items")
    op.drop_index("ix_lg_checkpoints_run", table_name="lg_checkpoints")
    for table in reversed(TABLES):
        op.drop_table(table)
