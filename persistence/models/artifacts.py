"""Artifacts: named bytes, text or JSON per workspace, with content type and metadata."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime, workspace_fk

__all__ = ["ARTIFACT_KINDS", "Artifact"]

#: How the caller gave the data, so that ``load`` returns the same kind.
ARTIFACT_KINDS = ("bytes", "str", "json")


class Artifact(Base):
    """One artifact: the payload as stored (maybe compressed) plus what reads it back."""

    __tablename__ = "artifacts"
    __table_args__ = (
        CheckConstraint("kind IN ('bytes', 'str', 'json')", name="kind"),
        workspace_fk(),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(255))
    user_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """Grows with every save of the name (migration 0007): what the read cache orders by."""
    # Last column on purpose (see migration 0003): large payloads stream in on SQLite.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
