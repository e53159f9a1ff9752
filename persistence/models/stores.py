"""Key/value stores: a named store per workspace and its items."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKeyConstraint, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime, utcnow, workspace_fk

__all__ = ["Store", "StoreItem"]


class Store(Base):
    """One named store; its row is what ``transaction(lock=True)`` locks on PostgreSQL."""

    __tablename__ = "stores"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoreItem(Base):
    """One key of a store.

    The primary key holds a SHA-256 of the key, not the key: a 1024-character key can
    be up to 4 KiB of UTF-8, more than a PostgreSQL btree entry may hold.
    """

    __tablename__ = "store_items"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "workspace_id", "store"],
            ["stores.tenant_id", "stores.workspace_id", "stores.name"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    store: Mapped[str] = mapped_column(String(63), primary_key=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    key: Mapped[str] = mapped_column(Text())
    value: Mapped[bytes] = mapped_column(LargeBinary())
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))
    """Grows with every write of the key, across deletes too (migration 0007): what the
    read cache orders its entries by."""
