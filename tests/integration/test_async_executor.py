"""A py-code-mode style executor: an asyncio subprocess that receives an access descriptor,
opens ``AsyncDatabase.from_access``, works in its scope (states, artifacts, a store, a
lease) and cannot reach another tenant or workspace through the Database it opened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from persistence import AsyncDatabase
from tests.conftest import unique_slug
from tests.fixtures.code_executor import ExecutionResult, SubprocessExecutor
from tests.fixtures.services import PostgresTarget

Scenario = Callable[[AsyncDatabase], Awaitable[None]]

CONFIGURATION_ERROR = "persistence.errors.ConfigurationError"


def _runner(url: str, owner_url: str | None) -> Callable[[Scenario], None]:
    """Run a scenario on a parent AsyncDatabase of ``url`` (migrated first on SQLite)."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            async with AsyncDatabase.from_url(url, owner_url=owner_url) as adb:
                if owner_url is None:
                    await adb.migrate()
                await scenario(adb)

        asyncio.run(main())

    return run


@pytest.fixture(params=["sqlite", "pg"])
def run_on(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], None]:
    """PostgreSQL (units of work as the runtime role, administration as the owner: the
    descriptor names the runtime role) or SQLite."""
    if request.param == "pg":
        return request.getfixturevalue("run_on_pg")  # type: ignore[no-any-return]
    return _runner(f"sqlite:///{tmp_path / 'executor.sqlite3'}", None)


@pytest.fixture
def run_on_pg(postgres: PostgresTarget) -> Callable[[Scenario], None]:
    return _runner(postgres.runtime_url, postgres.owner_url)


async def _tenants(adb: AsyncDatabase) -> tuple[str, str]:
    """Two tenants: ``mine`` (workspaces default and research) and ``other``."""
    mine, other = unique_slug(), unique_slug()
    async with adb.admin() as admin:
        await admin.tenants.create(mine)
        await admin.workspaces.create(mine, "research")
        await admin.tenants.create(other)
    for tenant, workspace, value in (
        (mine, "default", {"step": 1}),
        (mine, "research", {"research": True}),
        (other, "default", {"other": True}),
    ):
        async with adb.unit_of_work(tenant, workspace) as uow:
            await uow.states.save("plan", value)
            await uow.artifacts.save("notes.txt", f"{tenant}/{workspace}")
            await uow.store("memory").set("secret", f"{tenant}/{workspace}")
    return mine, other


async def _run(executor: SubprocessExecutor, code: str) -> Any:
    result = await executor.run(code)
    assert result.error is None, f"{result.error}: {result.message}"
    return result.value


def test_the_executor_reads_and_writes_its_scope(run_on: Callable[[Scenario], None]) -> None:
    async def scenario(adb: AsyncDatabase) -> None:
        mine, other = await _tenants(adb)
        async with SubprocessExecutor() as executor:
            await executor.start(await adb.access(mine))
            seen = await _run(
                executor,
                """
                async with db.unit_of_work() as uow:
                    state, meta = await uow.states.load("plan")
                    await uow.states.save("plan", {"step": 2}, expected_version=meta.version)
                    notes = await uow.artifacts.load("notes.txt")
                    await uow.artifacts.save("result.json", {"answer": 42})
                    scope = [uow.tenant.slug, uow.workspace.slug]
                store = db.store(tenant=access.tenant, workspace=access.workspace, name="memory")
                secret = await store.get("secret")
                async with db.lease(tenant=access.tenant, name="memory-writer", ttl=30) as lease:
                    async with store.fenced(lease).transaction(lock=True):
                        await store.set("runs", await store.get("runs", 0) + 1)
                keys = [key async for key in store.keys()]
                return {"state": state, "version": meta.version, "notes": notes,
                        "scope": scope, "secret": secret, "keys": keys}
                """,
            )
            # A second run sees the first's commit (one child, one database, many runs).
            names = await _run(
                executor,
                """
                async with db.unit_of_work(access.tenant, access.workspace) as uow:
                    page = await uow.artifacts.list()
                return [artifact.name for artifact in page.items]
                """,
            )
        assert seen == {
            "state": {"step": 1},
            "version": 1,
            "notes": f"{mine}/default",
            "scope": [mine, "default"],
            "secret": f"{mine}/default",
            "keys": ["runs", "secret"],
        }
        assert names == ["notes.txt", "result.json"]
        async with adb.unit_of_work(mine) as uow:
            state, meta = await uow.states.load("plan")  # type: ignore[misc]
            assert (state, meta.version) == ({"step": 2}, 2)
            assert await uow.artifacts.load("result.json") == {"answer": 42}
            assert await uow.store("memory").get("runs") == 1
        await _assert_untouched(adb, mine, other)

    run_on(scenario)


async def _assert_untouched(adb: AsyncDatabase, mine: str, other: str) -> None:
    """The other workspace and the other tenant are as they were seeded."""
    for tenant, workspace, value in (
        (mine, "research", {"research": True}),
        (other, "default", {"other": True}),
    ):
        async with adb.unit_of_work(tenant, workspace) as uow:
            state, meta = await uow.states.load("plan")  # type: ignore[misc]
            assert (state, meta.version) == (value, 1)
            page = await uow.artifacts.list()
            assert [a.name for a in page.items] == ["notes.txt"]
            assert await uow.artifacts.load("notes.txt") == f"{tenant}/{workspace}"
            assert [item async for item in uow.store("memory").items()] == [
                ("secret", f"{tenant}/{workspace}")
            ]


# Each reaches out of the descriptor's scope; each must raise ConfigurationError (the
# child reports the exception's class) before a statement runs.
ESCAPES = {
    "another tenant": """
        async with db.unit_of_work(OTHER) as uow:
            return await uow.states.load("plan")
    """,
    "another tenant, same workspace name": """
        async with db.unit_of_work(OTHER, "default") as uow:
            return await uow.states.load("plan")
    """,
    "another workspace": """
        async with db.unit_of_work(workspace="research") as uow:
            return await uow.states.load("plan")
    """,
    "another workspace, named with the tenant": """
        async with db.unit_of_work(access.tenant, "research") as uow:
            await uow.states.save("plan", {"overwritten": True})
    """,
    "another tenant's store": """
        return await db.store(tenant=OTHER, name="memory").get("secret")
    """,
    "another workspace's store": """
        store = db.store(tenant=access.tenant, workspace="research", name="memory")
        await store.set("secret", "overwritten")
    """,
    "another tenant's lease": """
        async with db.lease(tenant=OTHER, name="memory-writer") as lease:
            return lease.fence
    """,
    "administration": """
        async with db.admin() as admin:
            await admin.tenants.suspend(OTHER)
    """,
}


def test_the_executor_cannot_reach_another_tenant_or_workspace(
    run_on: Callable[[Scenario], None],
) -> None:
    async def scenario(adb: AsyncDatabase) -> None:
        mine, other = await _tenants(adb)
        results: dict[str, ExecutionResult] = {}
        async with SubprocessExecutor() as executor:
            await executor.start(await adb.access(mine))
            for what, code in ESCAPES.items():
                results[what] = await executor.run(code.replace("OTHER", repr(other)))
            # Refused calls leave the executor's own scope working.
            after = await _run(
                executor,
                """
                async with db.unit_of_work() as uow:
                    return (await uow.states.load("plan")).meta.version
                """,
            )
        assert {what: r.error for what, r in results.items()} == dict.fromkeys(
            ESCAPES, CONFIGURATION_ERROR
        )
        for what, result in results.items():
            if what != "administration":
                assert result.message == f"this Database was opened for {mine}/default only"
        assert after == 1
        await _assert_untouched(adb, mine, other)
        async with adb.admin() as admin:
            assert (await admin.tenants.get(other)).status == "active"

    run_on(scenario)


def test_sql_of_the_executors_own_sees_only_its_tenant(
    run_on_pg: Callable[[Scenario], None],
) -> None:
    """On PostgreSQL the child's connection is the runtime role, bound by row-level
    security: SQL of its own on ``uow.session`` sees only the tenant it entered."""

    async def scenario(adb: AsyncDatabase) -> None:
        mine, _ = await _tenants(adb)
        async with SubprocessExecutor() as executor:
            await executor.start(await adb.access(mine))
            seen = await _run(
                executor,
                """
                from sqlalchemy import text
                async with db.unit_of_work() as uow:
                    run = uow.session.execute
                    tenants = (await run(text("SELECT slug FROM tenants"))).scalars().all()
                    notes = await run(text("SELECT count(*) FROM artifacts"))
                    role = await run(text("SELECT rolsuper OR rolbypassrls FROM pg_roles "
                                          "WHERE rolname = current_user"))
                return {"tenants": tenants, "artifacts": notes.scalar(),
                        "bypasses": role.scalar()}
                """,
            )
        # Its own workspace's only (row-level security knows workspaces: migration
        # 0010), none of its tenant's other workspace, none of the other tenant's.
        assert seen == {"tenants": [mine], "artifacts": 1, "bypasses": False}

    run_on_pg(scenario)
