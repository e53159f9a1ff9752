"""Records of workflow runs: the run, a history entry, a stored exception, a worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from persistence.records._base import Record

__all__ = ["RunExceptionRecord", "RunHistoryRecord", "RunRecord", "RunStatus", "WorkerRecord"]

RunStatus = Literal["pending", "running", "retrying", "succeeded", "failed", "cancelled"]


class RunRecord(Record):
    """One run of a workflow. ``args`` is the JSON given to ``start``; ``attempts`` counts
    the times it went ``running``; ``not_before`` is when it may next be claimed."""

    id: str
    workflow: str
    status: RunStatus
    args: Any
    tags: tuple[str, ...]
    parent_run_id: str | None
    worker: str | None
    attempts: int
    not_before: datetime
    created_at: datetime
    updated_at: datetime


class RunHistoryRecord(Record):
    """One status change; ``seq`` counts from 1 per run."""

    run_id: str
    seq: int
    status: RunStatus
    at: datetime
    worker: str | None
    note: str | None


class RunExceptionRecord(Record):
    """A failure as text: qualified type name, message and formatted traceback
    (chained causes included). Nothing is pickled."""

    type_name: str
    message: str
    traceback: str


class WorkerRecord(Record):
    name: str
    info: dict[str, Any]
    registered_at: datetime
    heartbeat_at: datetime
