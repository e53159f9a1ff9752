"""Tenant and workspace administration (not tenant-scoped; runs as the owner role)."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from persistence.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from persistence.models.base import new_id, utcnow
from persistence.models.tenancy import Tenant, Workspace
from persistence.records import TenantRecord, WorkspaceRecord
from persistence.validation import display_name, validate_slug

__all__ = ["DEFAULT_WORKSPACE", "TenantRepository", "WorkspaceRepository"]

DEFAULT_WORKSPACE = "default"


def tenant_record(row: Tenant) -> TenantRecord:
    return TenantRecord.model_validate(row, from_attributes=True)


def workspace_record(row: Workspace) -> WorkspaceRecord:
    return WorkspaceRecord.model_validate(row, from_attributes=True)


class TenantRepository:
    """Create, read, rename, suspend, resume and delete tenants."""

    def __init__(self, session: Session):
        self._session = session

    def _row(self, slug: str) -> Tenant:
        validate_slug(slug, what="tenant slug")
        row = self._session.scalar(select(Tenant).where(Tenant.slug == slug))
        if row is None:
            raise NotFoundError(f"tenant {slug!r} does not exist")
        return row

    def create(self, slug: str, *, name: str | None = None) -> TenantRecord:
        """Create a tenant and its ``default`` workspace in the same transaction.

        Raises InvalidInputError for a bad slug, AlreadyExistsError if it is taken.
        """
        validate_slug(slug, what="tenant slug")
        name = display_name(name, default=slug)
        if self._session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise AlreadyExistsError(f"tenant {slug!r} already exists")
        now = utcnow()
        tenant = Tenant(
            id=new_id(), slug=slug, name=name, status="active", created_at=now, updated_at=now
        )
        self._session.add(tenant)
        self._session.flush()
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
        self._session.flush()
        return tenant_record(tenant)

    def get(self, slug: str) -> TenantRecord:
        """Return the tenant; NotFoundError if there is none."""
        return tenant_record(self._row(slug))

    def list(self) -> list[TenantRecord]:
        """Every tenant, ordered by slug."""
        rows = self._session.scalars(select(Tenant).order_by(Tenant.slug))
        return [tenant_record(row) for row in rows]

    def rename(self, slug: str, name: str) -> TenantRecord:
        row = self._row(slug)
        row.name = display_name(name, default=slug)
        row.updated_at = utcnow()
        self._session.flush()
        return tenant_record(row)

    def suspend(self, slug: str) -> TenantRecord:
        """Suspend the tenant: its units of work raise TenantSuspendedError until resumed."""
        return self._set_status(slug, "suspended")

    def resume(self, slug: str) -> TenantRecord:
        return self._set_status(slug, "active")

    def _set_status(self, slug: str, status: str) -> TenantRecord:
        row = self._row(slug)
        row.status = status
        row.updated_at = utcnow()
        self._session.flush()
        return tenant_record(row)

    def delete(self, slug: str) -> None:
        """Delete the tenant and every row it owns (foreign keys cascade)."""
        row = self._row(slug)
        self._session.execute(delete(Tenant).where(Tenant.id == row.id))


class WorkspaceRepository:
    """Create, read and delete the workspaces of a tenant."""

    def __init__(self, session: Session):
        self._session = session
        self._tenants = TenantRepository(session)

    def create(self, tenant: str, slug: str, *, name: str | None = None) -> WorkspaceRecord:
        """Create a workspace; AlreadyExistsError if the tenant already has that slug."""
        validate_slug(slug, what="workspace slug")
        name = display_name(name, default=slug)
        owner = self._tenants._row(tenant)
        if self._find(owner.id, slug) is not None:
            raise AlreadyExistsError(f"workspace {slug!r} already exists in tenant {tenant!r}")
        now = utcnow()
        row = Workspace(
            tenant_id=owner.id, id=new_id(), slug=slug, name=name, created_at=now, updated_at=now
        )
        self._session.add(row)
        self._session.flush()
        return workspace_record(row)

    def _find(self, tenant_id: object, slug: str) -> Workspace | None:
        return self._session.scalar(
            select(Workspace).where(Workspace.tenant_id == tenant_id, Workspace.slug == slug)
        )

    def get(self, tenant: str, slug: str) -> WorkspaceRecord:
        validate_slug(slug, what="workspace slug")
        owner = self._tenants._row(tenant)
        row = self._find(owner.id, slug)
        if row is None:
            raise NotFoundError(f"workspace {slug!r} does not exist in tenant {tenant!r}")
        return workspace_record(row)

    def list(self, tenant: str) -> list[WorkspaceRecord]:
        owner = self._tenants._row(tenant)
        rows = self._session.scalars(
            select(Workspace).where(Workspace.tenant_id == owner.id).order_by(Workspace.slug)
        )
        return [workspace_record(row) for row in rows]

    def delete(self, tenant: str, slug: str) -> None:
        """Delete a workspace and everything in it; the ``default`` one is refused."""
        if slug == DEFAULT_WORKSPACE:
            raise InvalidInputError("the default workspace cannot be deleted")
        record = self.get(tenant, slug)
        self._session.execute(
            delete(Workspace).where(
                Workspace.tenant_id == record.tenant_id, Workspace.id == record.id
            )
        )

    def rename(self, tenant: str, slug: str, name: str) -> WorkspaceRecord:
        record = self.get(tenant, slug)
        self._session.execute(
            update(Workspace)
            .where(Workspace.tenant_id == record.tenant_id, Workspace.id == record.id)
            .values(name=display_name(name, default=slug), updated_at=utcnow())
        )
        return self.get(tenant, slug)
