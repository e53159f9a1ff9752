"""Tenants, workspaces and the unit of work on both backends."""

from __future__ import annotations

import pytest

from persistence import Database
from persistence.errors import NotFoundError, TenantSuspendedError


def test_unit_of_work_binds_tenant_and_workspace(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant=tenant, workspace="research") as uow:
        assert uow.tenant.slug == tenant
        assert uow.workspace.slug == "research"
        assert uow.workspace.tenant_id == uow.tenant.id


def test_unknown_and_suspended(db: Database, tenant: str) -> None:
    with pytest.raises(NotFoundError), db.unit_of_work(tenant="nope-" + tenant):
        pass
    with pytest.raises(NotFoundError), db.unit_of_work(tenant=tenant, workspace="nope"):
        pass
    with db.admin() as admin:
        admin.tenants.suspend(tenant)
    with pytest.raises(TenantSuspendedError), db.unit_of_work(tenant=tenant):
        pass
