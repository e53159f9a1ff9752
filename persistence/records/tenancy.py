"""Records of tenants and workspaces."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from persistence.records._base import Record

__all__ = ["TenantRecord", "WorkspaceRecord"]


class TenantRecord(Record):
    id: uuid.UUID
    slug: str
    name: str
    status: Literal["active", "suspended"]
    created_at: datetime
    updated_at: datetime


class WorkspaceRecord(Record):
    tenant_id: uuid.UUID
    id: uuid.UUID
    slug: str
    name: str
    created_at: datetime
    updated_at: datetime
