"""Throughput of 64 concurrent tasks in one process on a pool of 8 connections: our
``AsyncDatabase`` (``pool_size=8, max_overflow=0``) against raw psycopg on
``psycopg_pool.AsyncConnectionPool(min_size=8, max_size=8)`` doing the same work.

Each task works on its own state or store key (no row contention on either side), so the
figure is what the client and its pool sustain when tasks queue for connections, as in a
service running many agents on a few connections.
"""

from __future__ import annotations

import asyncio
import fnmatch
import gc
import statistics
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg_pool

from benchmarks.async_core import AsyncBench
from benchmarks.async_ops import STORE_VALUE, raw_store_get, raw_store_set, raw_store_setup
from benchmarks.ops_data import store_params
from benchmarks.ops_states import RAW_SAVE, checked_value, load_params, save_params
from benchmarks.payloads import agent_state
from persistence.database_async import AsyncDatabase

TASKS = 64
CONNECTIONS = 8

Work = Callable[[int, int], Awaitable[object]]  # (task, iteration) -> one unit of work


@dataclass(frozen=True)
class Side:
    ops_per_s: float
    cpu_us: float  # client CPU per operation (the whole process: loop, pool, driver)


@dataclass(frozen=True)
class Mix:
    """One row of the table: medians over the rounds."""

    key: str
    label: str
    ours: Side | None = None
    raw: Side | None = None
    ratio: float | None = None  # median of the per-round ratios ours / raw
    error: str | None = None


@dataclass
class ConcurrencyResult:
    tasks: int = TASKS
    connections: int = CONNECTIONS
    per_task: int = 0  # operations of each task per round
    rounds: int = 0
    mixes: list[Mix] = field(default_factory=list)

    def mix(self, key: str) -> Mix | None:
        return next((m for m in self.mixes if m.key == key), None)


@dataclass(frozen=True)
class Pools:
    bench: AsyncBench
    db: AsyncDatabase  # ours, pool_size=8, max_overflow=0
    pool: psycopg_pool.AsyncConnectionPool[Any]  # raw, min_size=max_size=8


# -- the mixes -----------------------------------------------------------------------------


async def _state_mix(p: Pools, prefix: str) -> tuple[Work, Work]:
    """A read-modify-write in one transaction: load a state's latest version, save the
    next one (each task its own state)."""
    bench, base, tenant = p.bench, agent_state(), p.bench.env.tenant

    async def ours(task: int, i: int) -> None:
        async with p.db.unit_of_work(tenant) as uow:
            await uow.states.load(f"{prefix}-ours-{task}")
            await uow.states.save(f"{prefix}-ours-{task}", {**base, "step": i})

    async def raw(task: int, i: int) -> None:
        sql, params = load_params(bench, f"{prefix}-raw-{task}", None)
        save = save_params(bench, f"{prefix}-raw-{task}", {**base, "step": i})
        async with p.pool.connection() as conn, bench.raw_tx(conn) as tx:
            checked_value(await (await tx.execute(sql, params, prepare=True)).fetchone())
            await (await tx.execute(RAW_SAVE, save, prepare=True)).fetchone()

    return ours, raw


async def _store_mix(p: Pools, prefix: str) -> tuple[Work, Work]:
    """A store get then a store set of the task's own key: two transactions, as
    ``await store.get`` and ``await store.set`` are."""
    bench = p.bench
    store = p.db.store(tenant=bench.env.tenant, name=f"{prefix}-ours")
    await raw_store_setup(bench, f"{prefix}-raw")
    params = [store_params(bench, f"{prefix}-raw", f"k{t}") for t in range(TASKS)]
    for t in range(TASKS):
        await store.set(f"k{t}", STORE_VALUE)
        await raw_store_set(bench, params[t], STORE_VALUE)

    async def ours(task: int, i: int) -> None:
        value = await store.get(f"k{task}")
        await store.set(f"k{task}", value)

    async def raw(task: int, i: int) -> None:
        async with p.pool.connection() as conn:
            value = await raw_store_get(bench, params[task], conn)
        async with p.pool.connection() as conn:
            await raw_store_set(bench, params[task], value, conn)

    return ours, raw


MIXES: dict[str, tuple[str, Callable[[Pools, str], Awaitable[tuple[Work, Work]]]]] = {
    "async.concurrent.state": ("state load + save (one unit of work)", _state_mix),
    "async.concurrent.store": ("store get + set (two transactions)", _store_mix),
}


# -- running them --------------------------------------------------------------------------


async def one_round(work: Work, per_task: int, offset: int) -> Side:
    async def task(t: int) -> None:
        for i in range(offset, offset + per_task):
            await work(t, i)

    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(task(t) for t in range(TASKS)))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    ops = TASKS * per_task
    return Side(ops / wall, cpu / ops * 1e6)


async def _compare(key: str, p: Pools, per_task: int, rounds: int) -> tuple[list[Side], list[Side]]:
    """Warm up both sides (every pooled connection prepares its statements), then
    alternate them for ``rounds`` rounds, who goes first alternating too."""
    build = MIXES[key][1]
    ours, raw = await build(p, key.rsplit(".", 1)[1])
    for work in (ours, raw):  # the first use of each task's state creates it
        await one_round(work, 2, 0)
    sides: dict[str, list[Side]] = {"ours": [], "raw": []}
    offset = 2
    for r in range(rounds):
        order = [("ours", ours), ("raw", raw)]
        for name, work in order if r % 2 == 0 else reversed(order):
            sides[name].append(await one_round(work, per_task, offset))
            offset += per_task
    return sides["ours"], sides["raw"]


def _median(sides: list[Side]) -> Side:
    return Side(
        statistics.median(s.ops_per_s for s in sides), statistics.median(s.cpu_us for s in sides)
    )


def selected(patterns: list[str] | None) -> list[str]:
    """The mix keys matching one of the glob ``patterns`` (all when none given)."""
    if not patterns:
        return list(MIXES)
    return [k for k in MIXES if any(fnmatch.fnmatch(k, p) for p in patterns)]


def run(
    bench: AsyncBench, keys: list[str], *, per_task: int, rounds: int, log: bool = True
) -> ConcurrencyResult:
    """Run the mixes ``keys`` on ``bench``'s event loop with their own pools."""
    result = ConcurrencyResult(per_task=per_task, rounds=rounds)
    if keys:
        bench.run(_run(bench, keys, result, log))
    return result


@asynccontextmanager
async def pools(bench: AsyncBench) -> AsyncIterator[Pools]:
    """Ours and the baseline's pools of 8 connections, open (and filled) on entry."""
    db = bench.env.async_database(pool_size=CONNECTIONS, max_overflow=0)
    pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
        bench.env.runtime_dsn,
        min_size=CONNECTIONS,
        max_size=CONNECTIONS,
        kwargs={"autocommit": True},
        open=False,
    )
    await pool.open(wait=True)
    try:
        yield Pools(bench, db, pool)
    finally:
        await db.close()
        await pool.close()


async def _run(bench: AsyncBench, keys: list[str], result: ConcurrencyResult, log: bool) -> None:
    async with pools(bench) as p:
        for key in keys:
            mix = await _measure(key, p, result)
            if log:
                print(_progress(mix), file=sys.stderr, flush=True)
            result.mixes.append(mix)


async def _measure(key: str, p: Pools, result: ConcurrencyResult) -> Mix:
    label = MIXES[key][0]
    try:
        ours, raw = await _compare(key, p, result.per_task, result.rounds)
    except Exception as exc:  # one broken mix must not hide the other
        traceback.print_exc(file=sys.stderr)
        return Mix(key, label, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    ratio = statistics.median(o.ops_per_s / r.ops_per_s for o, r in zip(ours, raw, strict=True))
    return Mix(key, label, _median(ours), _median(raw), ratio)


def _progress(mix: Mix) -> str:
    if mix.ours is None or mix.ratio is None:
        return f"  {mix.key:<28} unavailable: {mix.error}"
    return f"  {mix.key:<28} {mix.ours.ops_per_s:9.0f} ops/s  ratio {mix.ratio:.2f}x"
