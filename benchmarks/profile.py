"""``python -m benchmarks.profile CASE [N]``: cProfile our side of one case.

Prints the statements and round trips per operation, then the functions that took
the most time (own time and cumulative) over ``N`` operations after a warm-up. An
asyncio case (``async.*``) is profiled on its event loop, the loop's own work included;
a concurrency workload (``async.concurrent.*``) runs ``N`` operations on each of its
64 tasks.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from benchmarks.core import Bench, Op
from benchmarks.env import bench_env
from benchmarks.roundtrips import count_ours
from benchmarks.runner import select


def _cpu_us(op: Op, n: int) -> float:
    for i in range(20):
        op(5_000_000 + i)
    start = time.process_time()
    for i in range(n):
        op(6_000_000 + i)
    return (time.process_time() - start) / n * 1e6


@contextmanager
def profiling() -> Iterator[None]:
    """cProfile (CPU time, not waiting) what runs inside; print the statistics after."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def _sync(key: str, n: int) -> int:
    cases = select([key])
    if not cases:
        print(f"no case matches {key!r}; see python -m benchmarks --list", file=sys.stderr)
        return 2
    with bench_env() as env, ExitStack() as stack:
        bench = Bench.open(env, stack, langgraph="langgraph" in key)
        ours, baseline = cases[0].build(bench)
        print(count_ours(bench.db.engine, ours))
        for name, side in (("ours", ours), ("baseline", baseline)):
            if side is not None:  # client CPU per op: unlike wall time, immune to waits
                print(f"{name}: {_cpu_us(side, n):.0f} us of client CPU per op")
        with profiling():
            for i in range(50, 50 + n):
                ours(i)
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    key, n = argv[0], int(argv[1]) if len(argv) > 1 else 500
    if key.startswith("async."):
        from benchmarks.async_profile import profile_async

        return profile_async(key, n)
    return _sync(key, n)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
