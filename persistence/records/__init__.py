"""Immutable pydantic records returned to callers (never ORM instances)."""

from persistence.records._base import Page, Record
from persistence.records.artifacts import ArtifactKind, ArtifactRecord
from persistence.records.runs import (
    RunExceptionRecord,
    RunHistoryRecord,
    RunRecord,
    WorkerRecord,
)
from persistence.records.tenancy import TenantRecord, WorkspaceRecord
from persistence.records.workflows import WorkflowRecord

__all__ = [
    "ArtifactKind",
    "ArtifactRecord",
    "Page",
    "Record",
    "RunExceptionRecord",
    "RunHistoryRecord",
    "RunRecord",
    "TenantRecord",
    "WorkerRecord",
    "WorkflowRecord",
    "WorkspaceRecord",
]
