"""``python -m benchmarks.profile CASE [N]``: cProfile our side of one case.

Prints the statements and round trips per operation, then the functions that took
the most time (own time and cumulative) over ``N`` operations after a warm-up.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from contextlib import ExitStack

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


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    key, n = argv[0], int(argv[1]) if len(argv) > 1 else 500
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
        profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
        profiler.enable()
        for i in range(50, 50 + n):
            ours(i)
        profiler.disable()
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
