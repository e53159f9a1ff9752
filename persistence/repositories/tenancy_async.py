"""Tenant and workspace administration (not tenant-scoped; runs as the owner role)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from persistence.models.base import new_id, utcnow
from persistence.models.tenancy import Tenant, Workspace
from persistence.records import TenantRecord, WorkspaceRecord
from persistence.validation import display_name, validate_slug

__all__ = ["DEFAULT_WORKSPACE", "AsyncTenantRepository", "AsyncWorkspaceRepository"]

DEFAULT_WORKSPACE = "default"


def tenant_record(row: Tenant) -> TenantRecord:
    return TenantRecord.model_validate(row, from_attributes=True)


def workspace_record(row: Workspace) -> WorkspaceRecord:
    return WorkspaceRecord.model_validate(row, from_attributes=True)


def _ignore(tenant_id: uuid.UUID) -> None:
    pass


class AsyncTenantRepository:
    """Create, read, rename, suspend, resume and delete tenants.

    ``changed(tenant_id)`` is called for each change a unit of work's entry or the read
    cache must hear of once it commits (the admin unit of work passes it)."""

    def __init__(self, session: AsyncSession, changed: Callable[[uuid.UUID], None] | None = None):
        self._session = session
        self._changed = changed if changed is not None else _ignore

    async def _row(self, slug: str) -> Tenant:
        validate_slug(slug, what="tenant slug")
        row = await self._session.scalar(select(Tenant).where(Tenant.slug == slug))
        if row is None:
            raise NotFoundError(f"tenant {slug!r} does not exist")
        return row

    async def create(self, slug: str, *, name: str | None = None) -> TenantRecord:
        """Create a tenant and its ``default`` workspace in the same transaction.

        Raises InvalidInputError for a bad slug, AlreadyExistsError if it is taken.
        """
        validate_slug(slug, what="tenant slug")
        name = display_name(name, default=slug)
        if await self._session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise AlreadyExistsError(f"tenant {slug!r} already exists")
        now = utcnow()
        tenant = Tenant(
            id=new_id(), slug=slug, name=name, status="active", created_at=now, updated_at=now
        )
        self._session.add(tenant)
        await self._session.flush()
        self._session.add(
            Workspace(
                tenant_id=tenant.id,
                id=new_id(),
                slug=DEFAULT_WORKSPACE,
                name="Default",
                created_at=now,
                updated_at=now,
            )
        )
        await self._session.flush()
        return tenant_record(tenant)

    async def get(self, slug: str) -> TenantRecord:
        """Return the tenant; NotFoundError if there is none."""
        return tenant_record(await self._row(slug))

    async def list(self) -> list[TenantRecord]:
        """Every tenant, ordered by slug."""
        rows = await self._session.scalars(select(Tenant).order_by(Tenant.slug))
        return [tenant_record(row) for row in rows]

    async def rename(self, slug: str, name: str) -> TenantRecord:
        row = await self._row(slug)
        row.name = display_name(name, default=slug)
        row.updated_at = utcnow()
        await self._session.flush()
        self._changed(row.id)
        return tenant_record(row)

    async def suspend(self, slug: str) -> TenantRecord:
        """Suspend the tenant: its units of work raise TenantSuspendedError until resumed."""
        return await self._set_status(slug, "suspended")

    async def resume(self, slug: str) -> TenantRecord:
        return await self._set_status(slug, "active")

    async def _set_status(self, slug: str, status: str) -> TenantRecord:
        row = await self._row(slug)
        row.status = status
        row.updated_at = utcnow()
        await self._session.flush()
        self._changed(row.id)
        return tenant_record(row)

    async def delete(self, slug: str) -> None:
        """Delete the tenant and every row it owns (foreign keys cascade)."""
        row = await self._row(slug)
        await self._session.execute(delete(Tenant).where(Tenant.id == row.id))
        self._changed(row.id)


class AsyncWorkspaceRepository:
    """Create, read and delete the workspaces of a tenant."""

    def __init__(self, session: AsyncSession, changed: Callable[[uuid.UUID], None] | None = None):
        self._session = session
        self._tenants = AsyncTenantRepository(session)
        self._changed = changed if changed is not None else _ignore

    async def create(self, tenant: str, slug: str, *, name: str | None = None) -> WorkspaceRecord:
        """Create a workspace; AlreadyExistsError if the tenant already has that slug."""
        validate_slug(slug, what="workspace slug")
        name = display_name(name, default=slug)
        owner = await self._tenants._row(tenant)
        if await self._find(owner.id, slug) is not None:
            raise AlreadyExistsError(f"workspace {slug!r} already exists in tenant {tenant!r}")
        now = utcnow()
        row = Workspace(
            tenant_id=owner.id, id=new_id(), slug=slug, name=name, created_at=now, updated_at=now
        )
        self._session.add(row)
        await self._session.flush()
        return workspace_record(row)

    async def _find(self, tenant_id: object, slug: str) -> Workspace | None:
        return await self._session.scalar(
            select(Workspace).where(Workspace.tenant_id == tenant_id, Workspace.slug == slug)
        )

    async def get(self, tenant: str, slug: str) -> WorkspaceRecord:
        validate_slug(slug, what="workspace slug")
        owner = await self._tenants._row(tenant)
        row = await self._find(owner.id, slug)
        if row is None:
            raise NotFoundError(f"workspace {slug!r} does not exist in tenant {tenant!r}")
        return workspace_record(row)

    async def list(self, tenant: str) -> list[WorkspaceRecord]:
        owner = await self._tenants._row(tenant)
        rows = await self._session.scalars(
            select(Workspace).where(Workspace.tenant_id == owner.id).order_by(Workspace.slug)
        )
        return [workspace_record(row) for row in rows]

    async def delete(self, tenant: str, slug: str) -> None:
        """Delete a workspace and everything in it; the ``default`` one is refused."""
        if slug == DEFAULT_WORKSPACE:
            raise InvalidInputError("the default workspace cannot be deleted")
        record = await self.get(tenant, slug)
        await self._session.execute(
            delete(Workspace).where(
                Workspace.tenant_id == record.tenant_id, Workspace.id == record.id
            )
        )
        self._changed(record.tenant_id)

    async def rename(self, tenant: str, slug: str, name: str) -> WorkspaceRecord:
        record = await self.get(tenant, slug)
        await self._session.execute(
            update(Workspace)
            .where(Workspace.tenant_id == record.tenant_id, Workspace.id == record.id)
            .values(name=display_name(name, default=slug), updated_at=utcnow())
        )
        self._changed(record.tenant_id)
        return await self.get(tenant, slug)
