"""Immutable pydantic records returned to callers (never ORM instances)."""

from persistence.records._base import Page, Record
from persistence.records.tenancy import TenantRecord, WorkspaceRecord

__all__ = ["Page", "Record", "TenantRecord", "WorkspaceRecord"]
