"""Records of workflows and their revisions."""

from __future__ import annotations

from datetime import datetime

from persistence.records._base import Record

__all__ = ["WorkflowRecord"]


class WorkflowRecord(Record):
    """One revision of a workflow. ``source`` is exactly what was saved (never executed);
    ``checksum`` is the SHA-256 of its UTF-8 bytes; ``created_at`` is when this revision
    was written."""

    name: str
    revision: int
    source: str
    description: str
    tags: tuple[str, ...]
    checksum: str
    created_at: datetime
