"""Leases (the SQL lock backend) and fences (the highest fencing token written per resource)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime

__all__ = ["Fence", "Lease"]


class Lease(Base):
    """A lease of the SQL backend. The row outlives its holder: ``fence`` only grows."""

    __tablename__ = "leases"
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    fence: Mapped[int] = mapped_column(BigInteger())
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Fence(Base):
    """The highest fencing token a write carried for one tenant and resource (lease name)."""

    __tablename__ = "fences"
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(200), primary_key=True)
    fence: Mapped[int] = mapped_column(BigInteger())
    holder: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
