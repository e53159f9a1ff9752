"""Records of key/value stores."""

from __future__ import annotations

import uuid
from datetime import datetime

from persistence.records._base import Record

__all__ = ["StoreRecord"]


class StoreRecord(Record):
    """A store of a workspace (its items are read through the store mapping)."""

    tenant_id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    created_at: datetime
