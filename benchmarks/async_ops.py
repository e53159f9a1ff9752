"""The asyncio cases: each hot operation of the sync table, on ``AsyncDatabase``, against
raw psycopg ``AsyncConnection`` doing the same work.

The raw side runs the sync baselines' SQL and checks (``ops_states``, ``ops_data``:
prepared statements, orjson, SHA-256 verified on read) in the round trips of a unit of
work: ``BEGIN`` with the tenant setting in one query, the statement, ``COMMIT``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.async_core import AsyncBench, async_case
from benchmarks.ops_data import (
    ARTIFACT_LOAD,
    ARTIFACT_SAVE,
    STORE_CREATE,
    STORE_GET,
    STORE_PUT,
    WORKFLOW_GET,
    WORKFLOW_SOURCE,
    artifact_params,
    checked_blob,
    checked_item,
    item_params,
    scope_params,
    store_params,
)
from benchmarks.ops_states import RAW_SAVE, STATES, checked_value, load_params, save_params
from benchmarks.payloads import agent_state, blob
from benchmarks.timing import AsyncOp

Pair = tuple[AsyncOp, AsyncOp]
STORE_VALUE = {"user": "u-42", "prefs": {"theme": "dark", "lang": "en"}, "count": 7}


# -- states ------------------------------------------------------------------------------


async def ours_save(bench: AsyncBench, state_id: str, value: Any) -> Any:
    async with bench.db.unit_of_work(bench.env.tenant) as uow:
        return await uow.states.save(state_id, value)


async def ours_load(bench: AsyncBench, state_id: str, version: int | None = None) -> Any:
    async with bench.db.unit_of_work(bench.env.tenant) as uow:
        return await uow.states.load(state_id, version=version)


async def raw_save(bench: AsyncBench, state_id: str, value: Any, conn: Any = None) -> int:
    """The raw baseline of ``await uow.states.save``; returns the new version."""
    params = save_params(bench, state_id, value)
    async with bench.raw_tx(conn) as tx:
        row = await (await tx.execute(RAW_SAVE, params, prepare=True)).fetchone()
    assert row is not None
    return int(row[0])


async def raw_load(
    bench: AsyncBench, state_id: str, version: int | None = None, conn: Any = None
) -> Any:
    """The raw baseline of ``await uow.states.load``: fetch, verify, decode."""
    sql, params = load_params(bench, state_id, version)
    async with bench.raw_tx(conn) as tx:
        row = await (await tx.execute(sql, params, prepare=True)).fetchone()
    return checked_value(row)


async def seed_state(bench: AsyncBench, state_id: str, versions: int) -> None:
    value = agent_state()
    async with bench.db.unit_of_work(bench.env.tenant) as uow:
        for _ in range(versions):
            await uow.states.save(state_id, value)


@async_case("state.save", "state save (new version)")
async def _save(bench: AsyncBench) -> Pair:
    value = agent_state()

    async def ours(i: int) -> Any:
        return await ours_save(bench, f"async-save-{i % STATES}", value)

    async def raw(i: int) -> Any:
        return await raw_save(bench, f"async-raw-save-{i % STATES}", value)

    return ours, raw


@async_case("state.load", "state load latest")
async def _load(bench: AsyncBench) -> Pair:
    await seed_state(bench, "async-load", 3)

    async def ours(i: int) -> Any:
        return await ours_load(bench, "async-load")

    async def raw(i: int) -> Any:
        return await raw_load(bench, "async-load")

    return ours, raw


@async_case("state.load_version", "state load by version")
async def _load_version(bench: AsyncBench) -> Pair:
    await seed_state(bench, "async-load-v", 3)

    async def ours(i: int) -> Any:
        return await ours_load(bench, "async-load-v", 2)

    async def raw(i: int) -> Any:
        return await raw_load(bench, "async-load-v", 2)

    return ours, raw


# -- stores ------------------------------------------------------------------------------


async def raw_store_setup(bench: AsyncBench, store: str) -> None:
    async with bench.raw_tx() as conn:
        await conn.execute(STORE_CREATE, scope_params(bench, s=store))


async def raw_store_get(bench: AsyncBench, params: dict[str, Any], conn: Any = None) -> Any:
    async with bench.raw_tx(conn) as tx:
        return checked_item(await (await tx.execute(STORE_GET, params, prepare=True)).fetchone())


async def raw_store_set(
    bench: AsyncBench, params: dict[str, Any], value: Any, conn: Any = None
) -> None:
    args = item_params(params, value)
    async with bench.raw_tx(conn) as tx:
        await tx.execute(STORE_PUT, args, prepare=True)


@async_case("store.get", "store get")
async def _store_get(bench: AsyncBench) -> Pair:
    store = bench.db.store(tenant=bench.env.tenant, name="async-get")
    await store.set("k", STORE_VALUE)
    await raw_store_setup(bench, "async-raw-get")
    params = store_params(bench, "async-raw-get", "k")
    await raw_store_set(bench, params, STORE_VALUE)

    async def ours(i: int) -> Any:
        return await store.get("k")

    async def raw(i: int) -> Any:
        return await raw_store_get(bench, params)

    return ours, raw


@async_case("store.set", "store set")
async def _store_set(bench: AsyncBench) -> Pair:
    store = bench.db.store(tenant=bench.env.tenant, name="async-set")
    await raw_store_setup(bench, "async-raw-set")
    params = [store_params(bench, "async-raw-set", f"k{j}") for j in range(16)]

    async def ours(i: int) -> None:
        await store.set(f"k{i % 16}", STORE_VALUE)

    async def raw(i: int) -> None:
        await raw_store_set(bench, params[i % 16], STORE_VALUE)

    return ours, raw


# -- workflows and artifacts ---------------------------------------------------------------


@async_case("workflow.get", "workflow get by name")
async def _workflow_get(bench: AsyncBench) -> Pair:
    async with bench.db.unit_of_work(bench.env.tenant) as uow:
        await uow.workflows.save("async_flow", WORKFLOW_SOURCE, description="doubles", tags=["a"])
    params = scope_params(bench, n="async_flow")

    async def ours(i: int) -> Any:
        async with bench.db.unit_of_work(bench.env.tenant) as uow:
            return await uow.workflows.get("async_flow")

    async def raw(i: int) -> Any:
        async with bench.raw_tx() as conn:
            return await (await conn.execute(WORKFLOW_GET, params, prepare=True)).fetchone()

    return ours, raw


DATA = blob(1024)


@async_case("artifact.save_1 KiB", "artifact save 1 KiB")
async def _artifact_save(bench: AsyncBench) -> Pair:
    async def ours(i: int) -> Any:
        async with bench.db.unit_of_work(bench.env.tenant) as uow:
            return await uow.artifacts.save(f"async-save-{i % 8}", DATA)

    async def raw(i: int) -> Any:
        params = artifact_params(bench, f"async-raw-save-{i % 8}", DATA)
        async with bench.raw_tx() as conn:
            return await (await conn.execute(ARTIFACT_SAVE, params, prepare=True)).fetchone()

    return ours, raw


@async_case("artifact.load_1 KiB", "artifact load 1 KiB")
async def _artifact_load(bench: AsyncBench) -> Pair:
    async with bench.db.unit_of_work(bench.env.tenant) as uow:
        await uow.artifacts.save("async-load", DATA)
    params = artifact_params(bench, "async-raw-load", DATA)
    async with bench.raw_tx() as conn:
        await conn.execute(ARTIFACT_SAVE, params)

    async def ours(i: int) -> Any:
        async with bench.db.unit_of_work(bench.env.tenant) as uow:
            return await uow.artifacts.load("async-load")

    async def raw(i: int) -> bytes:
        async with bench.raw_tx() as conn, conn.cursor(binary=True) as cur:
            await cur.execute(ARTIFACT_LOAD, params, prepare=True)
            row = await cur.fetchone()
        return checked_blob(row)

    return ours, raw


# -- the unit of work itself ---------------------------------------------------------------


@async_case("uow.empty", "empty unit of work", "psycopg AsyncConnection BEGIN + entry; COMMIT")
async def _empty(bench: AsyncBench) -> Pair:
    async def ours(i: int) -> None:
        async with bench.db.unit_of_work(bench.env.tenant):
            pass

    async def raw(i: int) -> None:
        async with bench.raw_tx():
            pass

    return ours, raw
