"""Hit ratios of the read cache under a skewed workload: ``ops`` operations over
``states`` states whose popularity follows Zipf(``s``), ``WRITE_SHARE`` of them saves,
the rest loads, one unit of work each, in one process.

Three runs of the same kind of workload, one after the other:

* **cache off**: ``Database()``, on states of its own (the throughput baseline);
* **shared, cold**: ``Database(cache='shared')`` (default in-process size) on states
  written without the cache, so neither tier holds any of them at first;
* **shared, second process**: a new ``Database(cache='shared')`` (an empty in-process
  tier, as a process that just started) on the same states, with another draw of the
  workload, after the cold run left in Redis the states it touched.

Every state is written (and the database vacuumed) before the first run. The hit ratios
are the cache's own counts (``db.cache.stats()``) over each run.
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from benchmarks.env import BenchEnv, vacuum
from benchmarks.payloads import agent_state

WRITE_SHARE = 0.05
ZIPF_S = 1.1


@dataclass
class ZipfRun:
    label: str
    ops_per_s: float
    cpu_us: float  # client CPU per operation (this process, the channel's thread included)
    loads: int
    writes: int
    distinct: int  # states the run touched
    served_local: int | None = None  # None: no cache
    served_shared: int | None = None
    redis_hits: int = 0  # the Redis tier's own counts: lookups that reached it
    redis_misses: int = 0
    refused_stale: int = 0  # lookups (or fills) refused: an entry too old, or below a mark

    def share(self, served: int | None) -> float | None:
        return None if served is None else served / self.loads


@dataclass
class ZipfResult:
    states: int
    ops: int
    s: float = ZIPF_S
    write_share: float = WRITE_SHARE
    runs: list[ZipfRun] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def workload(states: int, ops: int, seed: int) -> list[tuple[bool, int]]:
    """``ops`` (is a save, state rank) pairs: ranks drawn with weight 1 / rank**s."""
    rng = random.Random(seed)
    weights = [1 / rank**ZIPF_S for rank in range(1, states + 1)]
    ranks = rng.choices(range(states), weights=weights, k=ops)
    return [(rng.random() < WRITE_SHARE, rank) for rank in ranks]


def run(env: BenchEnv, states: int, ops: int) -> ZipfResult:
    result = ZipfResult(states=states, ops=ops)
    started = time.monotonic()
    print(
        f"  cache hit ratio: {ops:,} operations over {states:,} states, Zipf({ZIPF_S})",
        file=sys.stderr,
        flush=True,
    )
    try:
        first, second = workload(states, ops, seed=1), workload(states, ops, seed=2)
        with env.database() as plain:
            _seed(plain, env.tenant, "zipf-off", states)
            _seed(plain, env.tenant, "zipf-shared", states)
            vacuum(env)
            result.runs.append(_run(plain, env.tenant, "cache off", "zipf-off", first))
        for label, steps in (("shared, cold", first), ("shared, second process", second)):
            with env.database(cache="shared") as db:
                assert db.cache is not None and db.cache.channel is not None
                db.cache.channel.wait_live(5)
                result.runs.append(_run(db, env.tenant, label, "zipf-shared", steps))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    result.seconds = time.monotonic() - started
    return result


def _seed(db: Any, tenant: str, prefix: str, states: int) -> None:
    value = agent_state()
    with db.unit_of_work(tenant) as uow:
        for rank in range(states):
            uow.states.save(f"{prefix}-{rank}", value)
        uow.states.save(f"{prefix}-warm", value)


def _run(db: Any, tenant: str, label: str, prefix: str, steps: list[tuple[bool, int]]) -> ZipfRun:
    """One run of the workload ``steps`` on ``db`` (its states already written)."""
    ops = len(steps)
    value = agent_state()
    with db.unit_of_work(tenant) as uow:  # the pool's connection and the scope: warm
        uow.states.load(f"{prefix}-warm")
    before = db.cache.stats() if db.cache is not None else None
    cpu, start = time.process_time(), time.perf_counter()
    for write, rank in steps:
        with db.unit_of_work(tenant) as uow:
            if write:
                uow.states.save(f"{prefix}-{rank}", value)
            elif uow.states.load(f"{prefix}-{rank}") is None:
                raise RuntimeError(f"state {prefix}-{rank} is missing")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    writes = sum(1 for write, _ in steps if write)
    figures = ZipfRun(
        label, ops / wall, cpu / ops * 1e6, ops - writes, writes, len({r for _, r in steps})
    )
    if before is not None:
        _counts(figures, before, db.cache.stats())
    return figures


def _counts(run: ZipfRun, before: Any, after: Any) -> None:
    run.served_local = after.served_local - before.served_local
    run.served_shared = after.served_shared - before.served_shared
    run.refused_stale = after.refused_stale - before.refused_stale
    if after.shared is not None and before.shared is not None:
        run.redis_hits = after.shared.hits - before.shared.hits
        run.redis_misses = after.shared.misses - before.shared.misses
