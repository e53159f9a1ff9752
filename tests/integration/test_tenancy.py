"""Tenants, workspaces and the unit of work on both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from persistence import Database
from persistence.errors import (
    AlreadyExistsError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
    TenantSuspendedError,
)
from persistence.models import metadata
from persistence.records import TenantRecord, WorkspaceRecord
from tests.conftest import unique_slug

BAD_SLUGS = ["", "-a", "a-", "Acme", "a_b", "a b", "é", "x" * 64, "a\n"]


def snapshot(db: Database) -> list[tuple[object, ...]]:
    """Every tenant and workspace row (one query as the owner): compared before and after
    a failure to show nothing was written."""
    with db.owner_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT t.slug, t.name, t.status, t.updated_at, w.slug, w.name "
                "FROM tenants t LEFT JOIN workspaces w ON w.tenant_id = t.id "
                "ORDER BY t.slug, w.slug"
            )
        )
        return [tuple(row) for row in rows]


def test_unit_of_work_binds_tenant_and_workspace(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant=tenant, workspace="research") as uow:
        assert uow.tenant.slug == tenant
        assert uow.workspace.slug == "research"
        assert uow.workspace.tenant_id == uow.tenant.id
    with db.unit_of_work(tenant=tenant) as uow:
        assert uow.workspace.slug == "default"


def test_unknown_and_suspended(db: Database, tenant: str) -> None:
    with pytest.raises(NotFoundError), db.unit_of_work(tenant="nope-" + tenant):
        pass
    with pytest.raises(NotFoundError), db.unit_of_work(tenant=tenant, workspace="nope"):
        pass
    with db.admin() as admin:
        admin.tenants.suspend(tenant)
    with pytest.raises(TenantSuspendedError), db.unit_of_work(tenant=tenant):
        pass
    with db.admin() as admin:
        assert admin.tenants.resume(tenant).status == "active"
    with db.unit_of_work(tenant=tenant, workspace="research") as uow:
        assert uow.tenant.status == "active"


def test_tenant_lifecycle_returns_immutable_records(db: Database) -> None:
    slug = unique_slug()
    with db.admin() as admin:
        created = admin.tenants.create(slug, name="Acme Inc")
        assert [w.slug for w in admin.workspaces.list(slug)] == ["default"]
        research = admin.workspaces.create(slug, "research", name="Research")
    assert isinstance(created, TenantRecord) and isinstance(research, WorkspaceRecord)
    assert (created.slug, created.name, created.status) == (slug, "Acme Inc", "active")
    assert created.created_at.tzinfo is not None
    with pytest.raises(ValidationError):
        created.name = "changed"  # type: ignore[misc]
    with db.admin() as admin:
        renamed = admin.tenants.rename(slug, "Acme Corp")
        assert admin.tenants.get(slug) == renamed
        assert slug in [t.slug for t in admin.tenants.list()]
        assert admin.workspaces.get(slug, "research") == research
    assert renamed.id == created.id and renamed.name == "Acme Corp"
    assert renamed.updated_at >= created.updated_at


def test_two_tenants_see_only_their_own_rows(db: Database, make_tenant: Callable[..., str]) -> None:
    a, b = make_tenant("research"), make_tenant("research")
    with db.admin() as admin:
        a_id, b_id = admin.tenants.get(a).id, admin.tenants.get(b).id
        b_research = admin.workspaces.get(b, "research").id
    for workspace in ("default", "research"):
        with db.unit_of_work(tenant=a, workspace=workspace) as uow:
            assert uow.tenant.id == a_id and uow.workspace.tenant_id == a_id
            assert uow.workspace.id != b_research
            assert uow.scope.tenant_id == a_id
            if db.dialect == "postgresql":  # the database itself hides B (RLS)
                seen = uow.session.execute(text("SELECT id FROM tenants")).scalars().all()
                assert [str(x) for x in seen] == [str(a_id)]
                for table in tenant_tables():
                    others = uow.session.execute(
                        text(f"SELECT count(*) FROM {table} WHERE tenant_id <> :a"), {"a": a_id}
                    ).scalar()
                    assert others == 0, table
    with db.unit_of_work(tenant=b, workspace="research") as uow:
        assert uow.tenant.id == b_id and uow.workspace.id == b_research


def tenant_tables() -> list[str]:
    return sorted(name for name, t in metadata.tables.items() if "tenant_id" in t.c)


@pytest.mark.parametrize("slug", BAD_SLUGS)
def test_invalid_slugs_are_refused_before_writing(db: Database, tenant: str, slug: str) -> None:
    before = snapshot(db)
    with pytest.raises(InvalidInputError, match="slug"), db.admin() as admin:
        admin.tenants.create(slug)
    with pytest.raises(InvalidInputError, match="slug"), db.admin() as admin:
        admin.workspaces.create(tenant, slug)
    with pytest.raises(InvalidInputError, match="slug"), db.unit_of_work(tenant=slug):
        pass
    with pytest.raises(InvalidInputError), db.unit_of_work(tenant=tenant, workspace=slug):
        pass
    assert snapshot(db) == before


def test_wrong_types_and_names_are_refused(db: Database, tenant: str) -> None:
    before = snapshot(db)
    with pytest.raises(InvalidTypeError), db.admin() as admin:
        admin.tenants.create(42)  # type: ignore[arg-type]
    for name in ("", "   ", "x" * 201):
        with pytest.raises(InvalidInputError, match="name"), db.admin() as admin:
            admin.tenants.create(unique_slug(), name=name)
        with pytest.raises(InvalidInputError, match="name"), db.admin() as admin:
            admin.tenants.rename(tenant, name)
    assert snapshot(db) == before


def test_duplicates_are_refused_and_roll_back_the_transaction(db: Database, tenant: str) -> None:
    before = snapshot(db)
    fresh = unique_slug()
    with pytest.raises(AlreadyExistsError, match=tenant), db.admin() as admin:
        admin.tenants.create(fresh)  # written first, then undone with the failure
        admin.tenants.create(tenant)
    for workspace in ("research", "default"):
        with pytest.raises(AlreadyExistsError, match=workspace), db.admin() as admin:
            admin.workspaces.create(tenant, workspace)
    assert snapshot(db) == before


def test_unknown_tenant_or_workspace(db: Database, tenant: str) -> None:
    before = snapshot(db)
    ghost = unique_slug("ghost")
    calls: list[Callable[..., object]] = [
        lambda a: a.tenants.get(ghost),
        lambda a: a.tenants.rename(ghost, "x"),
        lambda a: a.tenants.suspend(ghost),
        lambda a: a.tenants.resume(ghost),
        lambda a: a.tenants.delete(ghost),
        lambda a: a.workspaces.create(ghost, "research"),
        lambda a: a.workspaces.list(ghost),
        lambda a: a.workspaces.get(tenant, "ghost"),
        lambda a: a.workspaces.delete(tenant, "ghost"),
        lambda a: a.workspaces.delete(ghost, "research"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError), db.admin() as admin:
            call(admin)
    assert snapshot(db) == before


def test_default_workspace_cannot_be_deleted(db: Database, tenant: str) -> None:
    before = snapshot(db)
    with pytest.raises(InvalidInputError, match="default"), db.admin() as admin:
        admin.workspaces.delete(tenant, "default")
    assert snapshot(db) == before
    with db.admin() as admin:
        admin.workspaces.delete(tenant, "research")
        assert [w.slug for w in admin.workspaces.list(tenant)] == ["default"]
    with pytest.raises(NotFoundError), db.unit_of_work(tenant=tenant, workspace="research"):
        pass


def owned_rows(db: Database, tenant_id: object) -> dict[str, int]:
    """Rows per tenant-owned table (as the owner, who sees every tenant)."""
    key = tenant_id if db.dialect == "postgresql" else str(tenant_id).replace("-", "")
    counts = {}
    with db.owner_engine.connect() as conn:
        for table in tenant_tables():
            counts[table] = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": key}
            ).scalar_one()
        counts["tenants"] = conn.execute(
            text("SELECT count(*) FROM tenants WHERE id = :t"), {"t": key}
        ).scalar_one()
    return counts


def populate(db: Database, tenant: str, workspace: str = "research") -> None:
    """One row or more of every aggregate, through the public API."""
    with db.unit_of_work(tenant=tenant, workspace=workspace) as uow:
        uow.states.save("plan", {"steps": [1, 2]}, tags=["demo"])
        uow.states.save("plan", {"steps": [1, 2, 3]})
        uow.workflows.create("fetch", "def run():\n    return 1\n", tags=["io"])
        uow.artifacts.save("report", b"bytes")
        uow.runs.start("fetch")
        uow.store("memory")["turns"] = 1


def test_deleting_a_tenant_removes_every_row_it_owns(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    doomed, kept = make_tenant("research", "ops"), make_tenant("research")
    with db.admin() as admin:
        doomed_id, kept_id = admin.tenants.get(doomed).id, admin.tenants.get(kept).id
    for slug in (doomed, kept):
        populate(db, slug)
    before = owned_rows(db, doomed_id)
    assert before["workspaces"] == 3
    filled = {table for table, count in before.items() if count}
    assert {"state_versions", "workflows", "artifacts", "runs", "store_items"} <= filled
    kept_before = owned_rows(db, kept_id)
    with db.admin() as admin:
        admin.tenants.delete(doomed)
    assert set(owned_rows(db, doomed_id).values()) == {0}
    assert owned_rows(db, kept_id) == kept_before
    with pytest.raises(NotFoundError), db.unit_of_work(tenant=doomed):
        pass
    with db.admin() as admin:  # the slug is free again
        admin.tenants.create(doomed)
