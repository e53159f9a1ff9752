"""Workflow runs: the run row, its status history, its keyed values and the workers registry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime, workspace_fk

__all__ = ["RUN_STATUSES", "Run", "RunHistory", "RunValue", "Worker"]

RUN_STATUSES = ("pending", "running", "retrying", "succeeded", "failed", "cancelled")
_STATUS_CHECK = "status IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')"
#: Runs a worker may claim; the partial claim index covers exactly these rows.
CLAIMABLE_WHERE = "status IN ('pending', 'retrying')"


def _run_fk() -> ForeignKeyConstraint:
    # Child rows die with their run (purge, workspace or tenant delete).
    return ForeignKeyConstraint(
        ["tenant_id", "workspace_id", "run_id"],
        ["runs.tenant_id", "runs.workspace_id", "runs.id"],
        ondelete="CASCADE",
    )


class Run(Base):
    """One invocation of a workflow. ``workflow`` is the workflow's name, deliberately not a
    foreign key: a run is a historical fact and outlives the deletion of its workflow."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_STATUS_CHECK, name="status"),
        workspace_fk(),
        # Claim: the oldest due run among pending/retrying ones, ordered by not_before.
        Index(
            "ix_runs_claim",
            "tenant_id",
            "workspace_id",
            "not_before",
            "id",
            postgresql_where=text(CLAIMABLE_WHERE),
            sqlite_where=text(CLAIMABLE_WHERE),
        ),
        Index("ix_runs_status", "tenant_id", "workspace_id", "status", "created_at"),
        Index("ix_runs_created", "tenant_id", "workspace_id", "created_at", "id"),
        Index("ix_runs_workflow", "tenant_id", "workspace_id", "workflow", "created_at"),
        Index("ix_runs_parent", "tenant_id", "workspace_id", "parent_run_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    args: Mapped[bytes] = mapped_column(LargeBinary)
    args_codec: Mapped[str] = mapped_column(String(8))
    args_checksum: Mapped[str] = mapped_column(String(64))
    tags: Mapped[str] = mapped_column(Text)  # JSON list of str
    parent_run_id: Mapped[str | None] = mapped_column(String(128))
    worker: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer)
    history_seq: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    result_codec: Mapped[str | None] = mapped_column(String(8))
    result_checksum: Mapped[str | None] = mapped_column(String(64))
    exception_type: Mapped[str | None] = mapped_column(String(500))
    exception_message: Mapped[str | None] = mapped_column(Text)
    exception_traceback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunHistory(Base):
    """One status change of a run; ``seq`` counts from 1 per run."""

    __tablename__ = "run_history"
    __table_args__ = (
        CheckConstraint(_STATUS_CHECK, name="status"),
        workspace_fk(),
        _run_fk(),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)


class RunValue(Base):
    """A keyed JSON value of a run: ``kind`` is ``data`` (run data, overwritable) or
    ``deterministic`` (written once, replayed ever after)."""

    __tablename__ = "run_values"
    __table_args__ = (
        CheckConstraint("kind IN ('data', 'deterministic')", name="kind"),
        workspace_fk(),
        _run_fk(),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Worker(Base):
    """A registered worker (the seed's app-info registry) and its last heartbeat."""

    __tablename__ = "run_workers"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    info: Mapped[str] = mapped_column(Text)  # JSON object
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
