"""Immutable pydantic records returned to callers (never ORM instances)."""

from persistence.records._base import Page, Record
from persistence.records.artifacts import ArtifactKind, ArtifactRecord
from persistence.records.leases import LeaseRecord
from persistence.records.runs import (
    RunExceptionRecord,
    RunHistoryRecord,
    RunRecord,
    WorkerRecord,
)
from persistence.records.states import Checkpoint, LoadedState, StateStats, StateVersion
from persistence.records.stores import StoreRecord
from persistence.records.tenancy import TenantRecord, WorkspaceRecord
from persistence.records.workflows import WorkflowRecord

__all__ = [
    "ArtifactKind",
    "ArtifactRecord",
    "Checkpoint",
    "LeaseRecord",
    "LoadedState",
    "Page",
    "Record",
    "RunExceptionRecord",
    "RunHistoryRecord",
    "RunRecord",
    "StateStats",
    "StateVersion",
    "StoreRecord",
    "TenantRecord",
    "WorkerRecord",
    "WorkflowRecord",
    "WorkspaceRecord",
]
