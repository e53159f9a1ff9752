"""LangGraph's checkpoints and store (``persistence.langgraph``), in tables of ours.

A thread's checkpoints live in one workspace: ``lg_checkpoints`` holds each checkpoint
(LangGraph's serializer, minus the large channel values), ``lg_channels`` maps each
(channel, version) a checkpoint refers to onto a blob, ``lg_blobs`` holds each
distinct value of a (thread, namespace) once (keyed by the SHA-256 of its serialized
form, which is verified on read), ``lg_writes`` the pending writes of a checkpoint,
and ``lg_threads`` each (thread, namespace)'s head: the checkpoint a single-writer
``put`` must continue. ``lg_store_items`` is LangGraph's store of one tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import Base, UTCDateTime, utcnow, workspace_fk

__all__ = [
    "LgBlob",
    "LgChannel",
    "LgCheckpoint",
    "LgRetention",
    "LgStoreItem",
    "LgThread",
    "LgWrite",
]

_EXPIRING = text("expires_at IS NOT NULL")


class LgThread(Base):
    """One (thread, namespace): its head checkpoint and when it was last written."""

    __tablename__ = "lg_threads"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text(), primary_key=True)
    head: Mapped[str | None] = mapped_column(Text())
    holder: Mapped[str] = mapped_column(String(64))
    """The saver (one instance: a process's writer) that wrote the head."""
    fence: Mapped[int] = mapped_column(BigInteger())
    """Raised by every put and put_writes of the (thread, namespace): what the read
    cache orders the namespace's latest checkpoint by."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LgCheckpoint(Base):
    __tablename__ = "lg_checkpoints"
    __table_args__ = (
        workspace_fk(),
        Index("ix_lg_checkpoints_run", "tenant_id", "run_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(Text())
    run_id: Mapped[str | None] = mapped_column(Text())
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[bytes] = mapped_column(LargeBinary())
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256 of the serialized payload (raw: half the size of its hex)."""
    versions: Mapped[str] = mapped_column(Text())
    """``channel_versions`` as JSON text, kept out of the payload: the database joins on
    it (a prune finds the channel versions no checkpoint names)."""
    meta: Mapped[str] = mapped_column("metadata", Text())
    """The metadata as JSON text, exactly as written; ``list(filter=)`` reads it as JSON."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LgChannel(Base):
    """The value of one channel at one version: its blob (a version without a row holds
    no value: the channel was emptied there, or its value is inline in the checkpoint)."""

    __tablename__ = "lg_channels"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text(), primary_key=True)
    channel: Mapped[str] = mapped_column(Text(), primary_key=True)
    version: Mapped[str] = mapped_column(Text(), primary_key=True)
    digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class LgBlob(Base):
    """One distinct serialized value of a (thread, namespace), written once however often
    it recurs."""

    __tablename__ = "lg_blobs"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text(), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    codec: Mapped[str] = mapped_column(String(8))
    value: Mapped[bytes] = mapped_column(LargeBinary())


class LgWrite(Base):
    __tablename__ = "lg_writes"
    __table_args__ = (workspace_fk(),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text(), primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    task_id: Mapped[str] = mapped_column(Text(), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer(), primary_key=True)
    channel: Mapped[str] = mapped_column(Text())
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[bytes] = mapped_column(LargeBinary())
    codec: Mapped[str] = mapped_column(String(8))
    checksum: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256 of the serialized value (empty for a blob's: the blob's digest is it)."""
    task_path: Mapped[str] = mapped_column(Text())
    digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    """A large value is a blob (``value`` empty): the same bytes as the channel value the
    write becomes in the next checkpoint, stored once for both."""


class LgStoreItem(Base):
    """An item of LangGraph's store: ``namespace`` is its labels joined by ``.``
    (LangGraph refuses a label with a period in it)."""

    __tablename__ = "lg_store_items"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        Index(  # partial: only items with a TTL (migration 0009)
            "ix_lg_store_items_expires",
            "tenant_id",
            "expires_at",
            postgresql_where=_EXPIRING,
            sqlite_where=_EXPIRING,
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(Text(), primary_key=True)
    key: Mapped[str] = mapped_column(Text(), primary_key=True)
    value: Mapped[str] = mapped_column(Text())
    """JSON text, exactly as written (its checksum is of these bytes); filters read it
    as JSON (PostgreSQL: its generated ``value_jsonb`` column, migration 0009)."""
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ttl_ms: Mapped[int | None] = mapped_column(BigInteger())
    """The item's TTL in milliseconds (a read with ``refresh_ttl`` restarts it)."""


class LgRetention(Base):
    """A tenant's retention of LangGraph checkpoints, applied by ``persistence gc``: keep
    the last ``keep_last`` checkpoints of each thread namespace, drop threads not
    written for ``idle_seconds`` (None: no such limit)."""

    __tablename__ = "lg_retention"
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    keep_last: Mapped[int | None] = mapped_column(Integer())
    idle_seconds: Mapped[int | None] = mapped_column(BigInteger())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
