"""Workflow runs: runs, their status history, keyed values and the workers registry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.models.base import UTCDateTime
from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS_CHECK = "status IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')"
_CLAIMABLE = "status IN ('pending', 'retrying')"
_TABLES = ("runs", "run_history", "run_values", "run_workers")


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


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "workspace_id", "run_id"],
        ["runs.tenant_id", "runs.workspace_id", "runs.id"],
        name=op.f(f"fk_{table}_tenant_id_workspace_id_run_id_runs"),
        ondelete="CASCADE",
    )


def _create_runs() -> None:
    op.create_table(
        "runs",
        *_scope_columns(),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("args", sa.LargeBinary(), nullable=False),
        sa.Column("args_codec", sa.String(8), nullable=False),
        sa.Column("args_checksum", sa.String(64), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("parent_run_id", sa.String(128), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("history_seq", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("result_codec", sa.String(8), nullable=True),
        sa.Column("result_checksum", sa.String(64), nullable=True),
        sa.Column("exception_type", sa.String(500), nullable=True),
        sa.Column("exception_message", sa.Text(), nullable=True),
        sa.Column("exception_traceback", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(_STATUS_CHECK, name=op.f("ck_runs_status")),
        _workspace_fk("runs"),
        sa.PrimaryKeyConstraint("tenant_id", "workspace_id", "id", name=op.f("pk_runs")),
    )
    op.create_index(
        op.f("ix_runs_claim"),
        "runs",
        ["tenant_id", "workspace_id", "not_before", "id"],
        postgresql_where=sa.text(_CLAIMABLE),
        sqlite_where=sa.text(_CLAIMABLE),
    )
    for name, columns in (
        ("ix_runs_status", ["status", "created_at"]),
        ("ix_runs_created", ["created_at", "id"]),
        ("ix_runs_workflow", ["workflow", "created_at"]),
        ("ix_runs_parent", ["parent_run_id"]),
    ):
        op.create_index(op.f(name), "runs", ["tenant_id", "workspace_id", *columns])


def _create_children() -> None:
    op.create_table(
        "run_history",
        *_scope_columns(),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(_STATUS_CHECK, name=op.f("ck_run_history_status")),
        _workspace_fk("run_history"),
        _run_fk("run_history"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "run_id", "seq", name=op.f("pk_run_history")
        ),
    )
    op.create_table(
        "run_values",
        *_scope_columns(),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('data', 'deterministic')", name=op.f("ck_run_values_kind")),
        _workspace_fk("run_values"),
        _run_fk("run_values"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workspace_id", "run_id", "kind", "key", name=op.f("pk_run_values")
        ),
    )
    op.create_table(
        "run_workers",
        *_scope_columns(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("info", sa.Text(), nullable=False),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        _workspace_fk("run_workers"),
        sa.PrimaryKeyConstraint("tenant_id", "workspace_id", "name", name=op.f("pk_run_workers")),
    )


def upgrade() -> None:
    _create_runs()
    _create_children()
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            for statement in enable_tenant_rls(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in reversed(_TABLES):
            for statement in disable_tenant_rls(table):
                op.execute(statement)
    for table in reversed(_TABLES):
        op.drop_table(table)
