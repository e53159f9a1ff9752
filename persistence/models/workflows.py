"""Workflows: a named Python source per workspace, with every revision kept."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKeyConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime, workspace_fk

__all__ = ["Workflow", "WorkflowRevision"]


class Workflow(Base):
    """The head of a workflow: its latest revision number and the searchable fields
    (description and tags of that latest revision)."""

    __tablename__ = "workflows"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    latest_revision: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WorkflowRevision(Base):
    """One immutable revision: the source byte-for-byte, its description and tags."""

    __tablename__ = "workflow_revisions"
    __table_args__ = (
        # Revisions die with their workflow (and so with the workspace and tenant).
        ForeignKeyConstraint(
            ["tenant_id", "workspace_id", "name"],
            ["workflows.tenant_id", "workflows.workspace_id", "workflows.name"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
