"""A unit of work of a scope the process knows defers BEGIN and the tenant entry to its
first statement (``persistence._deferred``): when the scope changed meanwhile, that
statement raises what the entry would have raised, and nothing of the unit of work is
ever committed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text

from persistence import Database
from persistence.errors import NotFoundError, TenantSuspendedError
from persistence.scopes import parse
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget


def _learn(db: Database, tenant: str, workspace: str = "default") -> None:
    with db.unit_of_work(tenant, workspace) as uow:
        uow.states.save("doc", {"n": 0})


def test_a_tenant_suspended_since_is_refused_at_the_first_statement(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        _learn(db, tenant)
        with pg_db.admin() as admin:
            admin.tenants.suspend(tenant)
        with pytest.raises(TenantSuspendedError), db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 1})  # sent with the entry, refused with it
        with pytest.raises(TenantSuspendedError), db.unit_of_work(tenant):
            pass  # the scope was forgotten: refused at `with` again
        with pg_db.admin() as admin:
            admin.tenants.resume(tenant)
        with db.unit_of_work(tenant) as uow:
            assert uow.states.load("doc").state == {"n": 0}  # nothing of it was written


def test_a_statement_after_the_refusal_is_refused_and_nothing_commits(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        _learn(db, tenant)
        with pg_db.admin() as admin:
            admin.tenants.suspend(tenant)
        with pytest.raises(TenantSuspendedError), db.unit_of_work(tenant) as uow:
            with pytest.raises(TenantSuspendedError):
                uow.store("s")["k"] = 1  # caught by the caller, who goes on
            with pytest.raises(TenantSuspendedError):
                uow.states.load("doc")
            # leaving the block without an exception: the commit refuses, too
        with pg_db.admin() as admin:
            admin.tenants.resume(tenant)
        with db.unit_of_work(tenant) as uow:
            assert "k" not in uow.store("s")


def test_a_tenant_deleted_and_created_again_is_refused_then_entered_anew(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        _learn(db, tenant)
        with pg_db.admin() as admin:
            admin.tenants.delete(tenant)
            admin.tenants.create(tenant)  # the same slug, new ids
        with pytest.raises(NotFoundError, match="created again"), db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"n": 1})
        with db.unit_of_work(tenant) as uow:  # entered anew: the new tenant, empty
            assert uow.states.list().items == []
            uow.states.save("doc", {"n": 2})
        with db.unit_of_work(tenant) as uow:
            assert uow.states.load("doc").state == {"n": 2}
            assert uow.states.load("doc").meta.version == 1


def test_a_workspace_deleted_since_is_not_found(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with pg_db.admin() as admin:
        admin.workspaces.create(tenant, "side")
    with open_database(postgres.runtime_url) as db:
        _learn(db, tenant, "side")
        with pg_db.admin() as admin:
            admin.workspaces.delete(tenant, "side")
        side = db.unit_of_work(tenant, "side")
        with pytest.raises(NotFoundError, match="workspace"), side as uow:
            uow.states.load("doc")
        with db.unit_of_work(tenant) as uow:  # the tenant's other workspace is fine
            uow.states.save("doc", {"n": 1})


def test_sql_of_your_own_runs_after_the_entry(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        _learn(db, tenant)
        with db.unit_of_work(tenant) as uow:  # the session's first statement: entry first
            setting = uow.session.execute(text("SELECT current_setting('persistence.scope')"))
            assert parse(setting.scalar_one()).tenant == uow.tenant.id.hex
        with db.unit_of_work(tenant) as uow, uow.savepoint():  # a savepoint first
            uow.states.save("doc", {"n": 1})
        with db.unit_of_work(tenant, read_only=True) as uow:  # the snapshot begins with it
            level = uow.session.execute(text("SHOW transaction_isolation")).scalar_one()
            assert level == "repeatable read"
            assert uow.states.load("doc").state == {"n": 1}


def test_a_read_only_unit_of_work_reads_one_snapshot_from_its_first_statement(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url) as db:
        _learn(db, tenant)
        with db.unit_of_work(tenant, read_only=True) as reader:
            assert reader.states.load("doc").state == {"n": 0}
            with db.unit_of_work(tenant) as writer:
                writer.states.save("doc", {"n": 1})
            assert reader.states.load("doc").state == {"n": 0}  # its snapshot
