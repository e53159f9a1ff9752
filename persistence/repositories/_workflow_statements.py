"""The workflow repository's hot statements, defined once in SQLAlchemy Core.

* :data:`LATEST`: a workflow's latest revision (:data:`LATEST_FOR_UPDATE` locks its head
  row first, on PostgreSQL);
* :data:`BY_REVISION`: one revision by number.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, select

from persistence._compiled import Statement
from persistence.models.workflows import Workflow, WorkflowRevision

__all__ = ["BY_REVISION", "LATEST", "LATEST_FOR_UPDATE", "REVISION_COLUMNS"]

REVISION_COLUMNS = (
    WorkflowRevision.name,
    WorkflowRevision.revision,
    WorkflowRevision.source,
    WorkflowRevision.description,
    WorkflowRevision.tags,
    WorkflowRevision.checksum,
    WorkflowRevision.created_at,
)


def _revision_query(revision: Any) -> Select[Any]:
    """One revision of a workspace's workflow (parameters ``t``, ``w``, ``name``), the one
    ``revision`` selects: a parameter, or the head's latest revision in a scalar subquery
    over its primary key, so the revision is always an index condition on the revisions'
    primary key, whatever the planner's statistics."""
    rev = WorkflowRevision.__table__.c
    return select(*(rev[c.key] for c in REVISION_COLUMNS)).where(
        rev.tenant_id == bindparam("t"),
        rev.workspace_id == bindparam("w"),
        rev.name == bindparam("name"),
        rev.revision == revision,
    )


def _latest_revision(*, lock: bool) -> Any:
    head = Workflow.__table__.c
    latest = select(head.latest_revision).where(
        head.tenant_id == bindparam("t"),
        head.workspace_id == bindparam("w"),
        head.name == bindparam("name"),
    )
    # FOR UPDATE (PostgreSQL; SQLite's writers are serialized already) orders concurrent
    # revisions of one workflow on its head row.
    return (latest.with_for_update() if lock else latest).scalar_subquery()


LATEST = Statement(_revision_query(_latest_revision(lock=False)), "workflows_latest")
LATEST_FOR_UPDATE = Statement(_revision_query(_latest_revision(lock=True)), "workflows_latest_lock")
BY_REVISION = Statement(_revision_query(bindparam("revision")), "workflows_by_revision")
