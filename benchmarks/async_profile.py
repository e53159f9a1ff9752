"""``python -m benchmarks.profile async.KEY [N]``: what ``benchmarks.profile`` does for
an asyncio case or a concurrency workload, on the case's event loop."""

from __future__ import annotations

import sys
import time

from benchmarks import async_concurrency
from benchmarks.async_core import AsyncBench, open_async_bench
from benchmarks.async_section import select
from benchmarks.env import bench_env
from benchmarks.profile import profiling
from benchmarks.roundtrips import count_ours
from benchmarks.timing import AsyncOp


async def _calls(op: AsyncOp, start: int, n: int) -> None:
    for i in range(start, start + n):
        await op(i)


def _cpu_us(bench: AsyncBench, op: AsyncOp, n: int) -> float:
    bench.run(_calls(op, 5_000_000, 20))
    start = time.process_time()
    bench.run(_calls(op, 6_000_000, n))
    return (time.process_time() - start) / n * 1e6


def profile_async(key: str, n: int) -> int:
    """Profile our side of the async case or concurrency workload ``key``."""
    if key in async_concurrency.MIXES:
        with bench_env() as env, open_async_bench(env) as bench:
            bench.run(_concurrent(bench, key, n))
        return 0
    cases = select([key])
    if not cases:
        print(f"no case matches {key!r}; see python -m benchmarks --list", file=sys.stderr)
        return 2
    with bench_env() as env, open_async_bench(env) as bench:
        ours, baseline = bench.run(cases[0].build(bench))
        print(count_ours(bench.db.engine.sync_engine, lambda i: bench.run(ours(i))))
        for name, side in (("ours", ours), ("baseline", baseline)):
            print(f"{name}: {_cpu_us(bench, side, n):.0f} us of client CPU per op")
        with profiling():
            bench.run(_calls(ours, 50, n))
    return 0


async def _concurrent(bench: AsyncBench, key: str, n: int) -> None:
    """Both sides' figures over one round of ``n`` operations per task, then a profile
    of ours over another."""
    tasks = async_concurrency.TASKS
    async with async_concurrency.pools(bench) as pools:
        ours, raw = await async_concurrency.MIXES[key][1](pools, "profile")
        for name, work in (("ours", ours), ("raw", raw)):
            await async_concurrency.one_round(work, 2, 0)  # warm-up
            figures = await async_concurrency.one_round(work, n, 2)
            print(f"{name}: {figures.ops_per_s:,.0f} ops/s, {figures.cpu_us:.0f} us CPU per op")
        print(f"ours, profiled: {tasks} tasks x {n} operations")
        with profiling():
            await async_concurrency.one_round(ours, n, 2 + n)
