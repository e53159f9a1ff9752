"""Records of leases, as the lock backend reports them."""

from __future__ import annotations

import uuid
from datetime import datetime

from persistence.records._base import Record

__all__ = ["LeaseRecord"]


class LeaseRecord(Record):
    """A held lease: who holds it, its fencing token and when it expires."""

    tenant_id: uuid.UUID
    name: str
    holder: str
    fence: int | None
    expires_at: datetime | None
    remaining: float
    """Seconds until expiry as the backend sees it (0 when already expired)."""
