"""The asyncio section of a run: the async cases one call after the other, then 64
concurrent tasks on 8 connections, all on one event loop."""

from __future__ import annotations

import fnmatch
import sys
from typing import TYPE_CHECKING

from benchmarks import async_concurrency
from benchmarks import async_ops as _registers_the_cases  # noqa: F401
from benchmarks.async_core import ASYNC_CASES, AsyncCase, open_async_bench, run_async_cases
from benchmarks.env import BenchEnv

if TYPE_CHECKING:
    from benchmarks.report import Result

SECTIONS = ("async", "concurrency")  # what --skip can leave out


def select(patterns: list[str] | None) -> list[AsyncCase]:
    """Async cases whose key matches one of the glob ``patterns`` (all when none given)."""
    if not patterns:
        return list(ASYNC_CASES)
    return [c for c in ASYNC_CASES if any(fnmatch.fnmatch(c.key, p) for p in patterns)]


def listing() -> list[tuple[str, str, str]]:
    """(key, label, baseline) of every async case and concurrency workload, for --list."""
    rows = [(c.key, c.label, c.baseline) for c in ASYNC_CASES]
    baseline = "psycopg on psycopg_pool, 64 tasks on 8 connections"
    return rows + [(k, label, baseline) for k, (label, _) in async_concurrency.MIXES.items()]


#: Rounds of the 64-task workloads at most (each round is 64 x per_task operations a side:
#: long enough that a disk stall is shared by both sides' medians anyway).
CONCURRENT_ROUNDS = 7


def run(
    env: BenchEnv,
    result: Result,
    *,
    only: list[str] | None,
    skip: list[str],
    n: int,
    repeat: int,
) -> None:
    """Fill ``result.async_rows`` and ``result.concurrency`` with what was selected."""
    cases = select(only) if "async" not in skip else []
    mixes = async_concurrency.selected(only) if "concurrency" not in skip else []
    if not cases and not mixes:
        return
    profile = result.profile
    with open_async_bench(env) as bench:
        if cases:
            print(f"asyncio cases ({n} ops x {repeat} rounds per side)", file=sys.stderr)
            result.async_rows = run_async_cases(
                bench, cases, n=n, repeat=repeat, warmup=profile.warmup
            )
        if mixes:
            tasks, per = async_concurrency.TASKS, profile.per_task
            rounds = min(repeat, CONCURRENT_ROUNDS)
            print(f"asyncio: {tasks} tasks x {per} ops x {rounds} rounds", file=sys.stderr)
            result.concurrency = async_concurrency.run(bench, mixes, per_task=per, rounds=rounds)
