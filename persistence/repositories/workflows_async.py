"""Workflows of one workspace: named Python sources with every revision kept."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from sqlalchemy import String, and_, cast, delete, func, insert, or_, select, update

from persistence._cursor import cursor_key, encode_cursor
from persistence.cache import Entry
from persistence.codecs import checksum
from persistence.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
)
from persistence.models.base import utcnow
from persistence.models.workflows import Workflow, WorkflowRevision
from persistence.records import Page, WorkflowRecord
from persistence.repositories import _cached as cached
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._sql import upsert
from persistence.repositories._workflow_rules import (
    WORD,
    check_description,
    check_tags,
    check_text,
    score,
    validate_revision,
    validate_source,
)
from persistence.repositories._workflow_statements import (
    BY_REVISION,
    LATEST,
    LATEST_FOR_UPDATE,
    REVISION_COLUMNS,
)
from persistence.validation import count, validate_workflow_name

__all__ = ["AsyncWorkflowRepository", "score", "validate_revision", "validate_source"]


def _record(row: Any) -> WorkflowRecord:
    return WorkflowRecord.from_row(row, tags=tuple(row.tags))


class AsyncWorkflowRepository:
    """Create, revise, read, search and delete the workflows of one workspace.

    Sources are validated (they parse and define ``run``) and stored byte-for-byte;
    nothing here ever executes them.
    """

    def __init__(self, scope: AsyncScope):
        self._scope = scope
        self._t, self._w = scope.tenant_id, scope.workspace_id

    async def _run(self, clause: Any) -> list[Any]:
        return await self._scope.execute(clause)

    def _mine(self, model: Any) -> Any:
        return and_(model.tenant_id == self._t, model.workspace_id == self._w)

    async def _insert_head(self, values: dict[str, Any]) -> bool:
        """Insert the workflow head unless the name exists; True when inserted."""
        stmt = (
            upsert(Workflow.__table__)
            .values(tenant_id=self._t, workspace_id=self._w, **values)
            .on_conflict_do_nothing()
            .returning(Workflow.name)
        )
        return bool(await self._run(stmt))

    async def _insert_revision(self, record: WorkflowRecord) -> WorkflowRecord:
        """Insert the revision ``record`` describes; the record."""
        values = dict(record.__dict__, tags=list(record.tags))
        await self._run(
            insert(WorkflowRevision).values(tenant_id=self._t, workspace_id=self._w, **values)
        )
        return record

    @staticmethod
    def _revision(
        name: str, revision: int, source: str, description: str, tags: tuple[str, ...]
    ) -> WorkflowRecord:
        """A new revision, written now, with the checksum of its source."""
        digest = checksum(source.encode("utf-8"))
        return WorkflowRecord.of(
            name=name,
            revision=revision,
            source=source,
            description=description,
            tags=tags,
            checksum=digest,
            created_at=utcnow(),
        )

    async def create(
        self, name: str, source: str, description: str = "", tags: Iterable[str] = ()
    ) -> WorkflowRecord:
        """Create a workflow at revision 1.

        Raises InvalidInputError (bad name, source, description or tags) before writing,
        AlreadyExistsError if the name exists in this workspace.
        """
        self._scope.require_writable("create")
        name, source = validate_workflow_name(name), validate_source(source)
        description = check_description(description)
        record = self._revision(name, 1, source, description, check_tags(tags))
        if not await self._insert_head(self._head(record)):
            raise AlreadyExistsError(f"workflow {name!r} already exists")
        return self._changed(await self._insert_revision(record))

    def _changed(self, latest: WorkflowRecord) -> WorkflowRecord:
        """After this transaction commits, ``latest`` is the workflow's latest revision
        (the read cache's entry of it)."""
        key = cached.workflow_key(self._w, latest.name)
        entry = Entry(latest.revision, b"", latest)
        self._scope.cache_written(cached.WORKFLOW, key, entry, latest.revision)
        return latest

    @staticmethod
    def _head(record: WorkflowRecord) -> dict[str, Any]:
        """The head row of a workflow whose latest revision is ``record``."""
        return dict(
            name=record.name,
            latest_revision=record.revision,
            description=record.description,
            tags=list(record.tags),
            created_at=record.created_at,
            updated_at=record.created_at,
        )

    async def save(
        self,
        name: str,
        source: str,
        description: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> WorkflowRecord:
        """Create the workflow, or write a new revision of it.

        ``description``/``tags`` left as None keep the latest revision's. Saving exactly
        the latest revision's source, description and tags writes nothing and returns it.
        Raises InvalidInputError before writing.
        """
        self._scope.require_writable("save")
        name, source = validate_workflow_name(name), validate_source(source)
        if description is not None:
            description = check_description(description)
        tag_tuple = check_tags(tags) if tags is not None else None
        latest = await self._latest_for_update(name)
        if latest is None:
            try:
                async with (await self._scope.connected()).begin_nested():
                    return await self.create(name, source, description or "", tag_tuple or ())
            except AlreadyExistsError:  # a concurrent first save won; revise it
                latest = await self._latest_for_update(name)
                assert latest is not None
        description = latest.description if description is None else description
        tag_tuple = latest.tags if tag_tuple is None else tag_tuple
        if (source, description, tag_tuple) == (latest.source, latest.description, latest.tags):
            return latest
        revision = count(latest.revision + 1, "the next revision", minimum=1)  # INTEGER column
        return await self._write_revision(name, revision, source, description, tag_tuple)

    async def _write_revision(
        self, name: str, revision: int, source: str, description: str, tags: tuple[str, ...]
    ) -> WorkflowRecord:
        record = self._revision(name, revision, source, description, tags)
        await self._run(
            update(Workflow)
            .where(self._mine(Workflow), Workflow.name == name)
            .values(
                latest_revision=revision,
                description=description,
                tags=list(tags),
                updated_at=record.created_at,
            )
        )
        return self._changed(await self._insert_revision(record))

    async def _latest_for_update(self, name: str) -> WorkflowRecord | None:
        params = {"t": self._t, "w": self._w, "name": name}
        row = await self._scope.run_one(LATEST_FOR_UPDATE, params)
        return _record(row) if row is not None else None

    async def get(self, name: str, revision: int | None = None) -> WorkflowRecord:
        """The latest revision (or ``revision``). Raises NotFoundError."""
        validate_workflow_name(name)
        if revision is not None:
            revision = count(revision, "revision", minimum=1)
        latest = cached.workflow_key(self._w, name)
        key = cached.workflow_key(self._w, name, revision)
        cache = self._scope.cache_for(key, latest)  # (not once this unit of work wrote it)
        if cache is None:
            return await self._read(name, revision)
        entry, ticket = await cache.get(self._t, cached.WORKFLOW, key)
        if entry is not None:
            found: WorkflowRecord = entry.meta
            return found
        record = await self._read(name, revision)
        await cache.fill(self._t, cached.WORKFLOW, key, Entry(record.revision, b"", record), ticket)
        return record

    async def _read(self, name: str, revision: int | None) -> WorkflowRecord:
        params: dict[str, Any] = {"t": self._t, "w": self._w, "name": name}
        if revision is None:
            row = await self._scope.run_one(LATEST, params)
        else:
            row = await self._scope.run_one(BY_REVISION, dict(params, revision=revision))
        if row is None:
            which = f" revision {revision}" if revision is not None else ""
            raise NotFoundError(f"workflow {name!r}{which} does not exist")
        return _record(row)

    async def exists(self, name: str) -> bool:
        validate_workflow_name(name)
        stmt = select(Workflow.name).where(self._mine(Workflow), Workflow.name == name)
        return bool(await self._run(stmt))

    def _select_latest(self) -> Any:
        return (
            select(*REVISION_COLUMNS)
            .join(
                Workflow,
                and_(
                    Workflow.tenant_id == WorkflowRevision.tenant_id,
                    Workflow.workspace_id == WorkflowRevision.workspace_id,
                    Workflow.name == WorkflowRevision.name,
                    Workflow.latest_revision == WorkflowRevision.revision,
                ),
            )
            .where(self._mine(WorkflowRevision))
        )

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[WorkflowRecord]:
        """The latest revision of every workflow, ordered by name, one page at a time."""
        limit = count(limit, "limit", minimum=1)
        stmt = self._select_latest().order_by(WorkflowRevision.name).limit(limit + 1)
        if cursor is not None:
            stmt = stmt.where(WorkflowRevision.name > cursor_key(cursor))
        items = [_record(row) for row in await self._run(stmt)]
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1].name) if more else None)

    async def revisions(self, name: str) -> builtins.list[WorkflowRecord]:
        """Every revision of the workflow, oldest first. Raises NotFoundError."""
        validate_workflow_name(name)
        stmt = (
            select(*REVISION_COLUMNS)
            .where(self._mine(WorkflowRevision), WorkflowRevision.name == name)
            .order_by(WorkflowRevision.revision)
        )
        items = [_record(row) for row in await self._run(stmt)]
        if not items:
            raise NotFoundError(f"workflow {name!r} does not exist")
        return items

    async def search(self, query: str, limit: int = 10) -> builtins.list[WorkflowRecord]:
        """Latest revisions matching ``query`` in name, description or tags, best first.

        Ranked by :func:`score` (ties by name); only this workspace is searched.
        """
        query = check_text(query, "query", 1000)
        limit = count(limit, "limit", minimum=1)
        words = WORD.findall(query.lower())
        if not words:
            return []
        stmt = select(Workflow.name, Workflow.description, Workflow.tags).where(
            self._mine(Workflow)
        )
        if all(word.isascii() for word in words):  # SQL lower() is reliable for ASCII only
            fields = (Workflow.name, Workflow.description, cast(Workflow.tags, String))
            stmt = stmt.where(
                or_(
                    *(
                        func.lower(field).contains(word, autoescape=True)
                        for word in words
                        for field in fields
                    )
                )
            )
        found = await self._run(stmt)
        ranked = sorted(
            ((score(query, r.name, r.description, r.tags), r.name) for r in found),
            key=lambda pair: (-pair[0], pair[1]),
        )
        best = [name for points, name in ranked[:limit] if points > 0]
        if not best:
            return []
        rows = await self._run(self._select_latest().where(WorkflowRevision.name.in_(best)))
        by_name = {row.name: _record(row) for row in rows}
        return [by_name[name] for name in best if name in by_name]

    async def delete(self, name: str) -> None:
        """Delete the workflow and every revision. Raises NotFoundError."""
        self._scope.require_writable("delete")
        validate_workflow_name(name)
        deleted = await self._run(
            delete(Workflow)
            .where(self._mine(Workflow), Workflow.name == name)
            .returning(Workflow.name)
        )
        if not deleted:
            raise NotFoundError(f"workflow {name!r} does not exist")
        # Its revisions' entries go with the tenant's epoch: a name created again starts
        # at revision 1, below what the cache has seen of the old one (deletes are rare).
        self._scope.cache_tenant_changed()

    async def import_revision(self, record: WorkflowRecord) -> bool:
        """Write ``record`` with its exact revision number and metadata (for import).

        Idempotent: an identical revision already stored is a no-op (False); a different
        one raises ConflictError. Invalid fields raise InvalidInputError before writing.
        """
        self._scope.require_writable("import_revision")
        record = validate_revision(record)
        name = record.name
        try:
            existing: WorkflowRecord | None = await self.get(name, record.revision)
        except NotFoundError:
            existing = None
        if existing is not None:
            content = (record.source, record.description, record.tags)
            if (existing.source, existing.description, existing.tags) != content:
                raise ConflictError(
                    f"workflow {name!r} revision {record.revision} already "
                    "exists with different content"
                )
            return False
        await self._import_head(record)
        await self._insert_revision(record)
        self._scope.cache_tenant_changed()  # (imports are rare; the head may have moved)
        return True

    async def _import_head(self, record: WorkflowRecord) -> None:
        """Insert the head of an imported revision, or move an existing head to it if it
        is newer (the head's creation time is the oldest revision's)."""
        name, revision, created_at = record.name, record.revision, record.created_at
        head = self._head(record)
        if await self._insert_head(head):
            return
        rows = await self._run(
            select(Workflow.latest_revision, Workflow.created_at).where(
                self._mine(Workflow), Workflow.name == name
            )
        )
        row = rows[0]
        values: dict[str, Any] = {"created_at": min(row.created_at, created_at)}
        if revision > row.latest_revision:
            values.update(
                latest_revision=revision,
                description=record.description,
                tags=list(record.tags),
                updated_at=created_at,
            )
        await self._run(
            update(Workflow).where(self._mine(Workflow), Workflow.name == name).values(**values)
        )
