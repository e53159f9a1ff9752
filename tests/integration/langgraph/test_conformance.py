"""LangGraph's own conformance suite (``langgraph-checkpoint-conformance``) against
AsyncPersistenceSaver, on PostgreSQL (as the runtime role) and on SQLite: every
capability it knows, base and extended, detected and passed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from persistence import AsyncDatabase
from persistence.langgraph import AsyncPersistenceSaver
from tests.fixtures.services import PostgresTarget


async def _run(adb: AsyncDatabase) -> dict[str, tuple[int, int, list[str]]]:
    async def fresh() -> AsyncIterator[AsyncPersistenceSaver]:
        slug = f"lg-{uuid.uuid4().hex[:12]}"  # a tenant per capability: a clean slate
        async with adb.admin() as admin:
            await admin.tenants.create(slug)
        yield AsyncPersistenceSaver(adb, tenant=slug)

    registered = checkpointer_test(name=f"AsyncPersistenceSaver-{adb.dialect}")(fresh)
    report = await validate(registered)
    return {
        name: (result.tests_passed, result.tests_failed, list(result.failures))
        for name, result in report.results.items()
        if result.detected
    }


@pytest.mark.parametrize("backend", ["pg", "sqlite"])
def test_every_capability_passes(backend: str, postgres: PostgresTarget, tmp_path: Path) -> None:
    async def main() -> dict[str, tuple[int, int, list[str]]]:
        if backend == "pg":
            adb = AsyncDatabase.from_url(postgres.runtime_url, owner_url=postgres.owner_url)
        else:
            adb = AsyncDatabase.from_url(f"sqlite:///{tmp_path / 'lg.sqlite3'}")
            await adb.migrate()
        async with adb:
            return await _run(adb)

    results = asyncio.run(main())
    counts = {name: passed for name, (passed, _, _) in results.items()}
    print(f"conformance on {backend}: {counts}, total {sum(counts.values())}")
    assert set(results) == {c.value for c in ALL_CAPABILITIES}
    failures = {name: f for name, (_, failed, f) in results.items() if failed}
    for name, f in failures.items():
        print(name, *f, sep="\n  ")
    assert failures == {}
