"""Versioned agent state: a head row per state, its versions, their tags, checkpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime, workspace_fk

__all__ = ["StateCheckpoint", "StateHead", "StateTag", "StateVersionRow"]

STATE_ID_LENGTH = 255
TAG_LENGTH = 100
CHECKPOINT_NAME_LENGTH = 200
_EXPIRING = text("expires_at IS NOT NULL")


class StateHead(Base):
    """One row per state: the version counter and a pointer to the latest version.

    Saving updates (or inserts) this row first, which locks it: concurrent writers of
    one state queue here and get gap-free numbers. Loading the latest version joins
    this row to its version by primary key, whatever the number of versions.
    ``latest_version`` is NULL once every version is deleted (the counter is kept so
    numbers are never reused); ``expires_at`` and ``parent_version`` mirror the latest
    version so the save can return them from the same statement.
    """

    __tablename__ = "state_heads"
    __table_args__ = (
        workspace_fk(),
        CheckConstraint("last_version >= 0", name="last_version"),
        # Partial: only the purge may use it, never a load (see migration 0006).
        Index(
            "ix_state_heads_expires_at",
            "tenant_id",
            "workspace_id",
            "expires_at",
            postgresql_where=_EXPIRING,
            sqlite_where=_EXPIRING,
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state_id: Mapped[str] = mapped_column(String(STATE_ID_LENGTH), primary_key=True)
    last_version: Mapped[int]
    latest_version: Mapped[int | None]
    parent_version: Mapped[int | None]
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StateVersionRow(Base):
    """One version of a state: the encoded payload and what is needed to verify it."""

    __tablename__ = "state_versions"
    __table_args__ = (
        workspace_fk(),
        CheckConstraint("version >= 1", name="version"),
        Index(
            "ix_state_versions_expires_at",
            "tenant_id",
            "workspace_id",
            "expires_at",
            postgresql_where=_EXPIRING,
            sqlite_where=_EXPIRING,
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state_id: Mapped[str] = mapped_column(String(STATE_ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parent_version: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    raw_size: Mapped[int]
    stored_size: Mapped[int]
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON())
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON())
    payload: Mapped[bytes] = mapped_column(LargeBinary())


class StateTag(Base):
    """One tag of one version; searches join it to the head's latest version."""

    __tablename__ = "state_tags"
    __table_args__ = (
        workspace_fk(),
        ForeignKeyConstraint(
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
        Index("ix_state_tags_version", "tenant_id", "workspace_id", "state_id", "version"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tag: Mapped[str] = mapped_column(String(TAG_LENGTH), primary_key=True)
    state_id: Mapped[str] = mapped_column(String(STATE_ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class StateCheckpoint(Base):
    """A named snapshot of one version, with its own copy of the payload so pruning
    or deleting the version never breaks it."""

    __tablename__ = "state_checkpoints"
    __table_args__ = (
        workspace_fk(),
        UniqueConstraint("tenant_id", "workspace_id", "state_id", "name"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    state_id: Mapped[str] = mapped_column(String(STATE_ID_LENGTH))
    name: Mapped[str] = mapped_column(String(CHECKPOINT_NAME_LENGTH))
    version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    raw_size: Mapped[int]
    stored_size: Mapped[int]
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON())
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON())
    payload: Mapped[bytes] = mapped_column(LargeBinary())
