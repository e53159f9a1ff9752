"""State loads while Redis is dead, through ``cache='shared'``, against the same loads
with the cache off (docs/cache.md, "Failures": a dead Redis costs no latency per call).

The benchmark starts a Redis server of its own on a free port (never the run's shared
one), opens ``Database(cache='shared')`` on it, warms it up (loads that fill both tiers,
the invalidation channel live), then kills the server. Each load is of a state that was
never loaded before, so none is in the in-process tier and every one takes the whole
degraded path: the in-process lookup, the Redis tier skipped by its circuit breaker
(after the first error; it tries again every ``cache_breaker`` seconds, here
``BREAKER_S``), the database, the in-process fill. Repeated keys would be served from
memory instead, which says nothing about the cost of the dead tier. The cache-off side
loads states of its own. The states are written (and the database vacuumed) before
either side reads.

The two sides alternate load by load (who goes first alternating too), not in rounds as
the cases do: a p99 compares the worst loads of each side, and on a machine shared with
other work a stall during one side's round decides it; load by load, a stall hits both
sides alike. Each side's p50 and p99 are over all of its loads, its ops/s is its loads
over the time they took, its client CPU the process's CPU time during them.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import redis

from benchmarks.env import BenchEnv, vacuum
from benchmarks.payloads import agent_state
from benchmarks.timing import Op, Summary, percentile
from persistence.settings import Settings

_WARM = 50  # states loaded through the cache while its Redis is alive
#: cache_breaker of the dead-Redis side: shorter than the default 5 s, so that a run's
#: loads (a second or two) include the cache trying Redis again after the breaker
BREAKER_S = 0.5


@dataclass
class OutageResult:
    dead: Summary | None = None  # cache='shared', its Redis killed
    off: Summary | None = None  # cache='off'
    ratio: float | None = None  # dead / off ops/s
    breaker_s: float = 0.0  # the dead-Redis side's cache_breaker ...
    default_breaker_s: float = 0.0  # ... and the setting's default
    errors: int = 0  # Redis errors the cache counted while Redis was dead
    skipped: int = 0  # Redis calls the breaker skipped meanwhile
    served_local: int = 0  # loads served from memory meanwhile (distinct keys: none)
    ops: int = 0  # loads per side (measured, after ``warmup`` of each)
    warmup: int = 0
    error: str | None = None

    @property
    def p99_ratio(self) -> float | None:
        if self.dead is None or self.off is None or not self.off.p99_ms:
            return None
        return self.dead.p99_ms / self.off.p99_ms


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _redis_server() -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server (no persistence) and its URL, once it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        for _ in range(100):
            try:
                if client.ping():
                    return proc, url
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    proc.kill()
    proc.wait()
    raise RuntimeError(f"the throwaway redis-server on port {port} did not answer")


def run(env: BenchEnv, *, n: int, warmup: int) -> OutageResult:
    result = OutageResult(ops=n, warmup=warmup)
    print(f"  cache with Redis dead: {n} loads per side, interleaved", file=sys.stderr)
    server = None
    try:
        server, url = _redis_server()
        total = warmup + n
        dead_env = dataclasses.replace(env, redis_url=url)
        with (
            env.database() as off,
            dead_env.database(cache="shared", cache_breaker=BREAKER_S) as cached,
        ):
            dead_keys = _seed(off, env.tenant, "outage-dead", total + _WARM)
            off_keys = _seed(off, env.tenant, "outage-off", total + _WARM)
            vacuum(env)
            _warm(cached, env.tenant, dead_keys[total:])
            _warm(off, env.tenant, off_keys[total:])
            server.kill()
            server.wait(timeout=30)
            _measure(result, cached, off, env.tenant, (dead_keys, off_keys))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(timeout=30)
    return result


def _measure(
    result: OutageResult,
    cached: Any,
    off: Any,
    tenant: str,
    keys: tuple[list[str], list[str]],
) -> None:
    assert cached.cache is not None
    result.breaker_s = cached.settings.cache_breaker
    result.default_breaker_s = Settings.model_fields["cache_breaker"].default
    before = cached.cache.stats()
    dead_keys, off_keys = keys
    sides = (
        lambda i: _load(cached, tenant, dead_keys[i]),
        lambda i: _load(off, tenant, off_keys[i]),
    )
    result.dead, result.off = _interleaved(sides, result.warmup, result.ops)
    after = cached.cache.stats()
    result.ratio = result.dead.ops_per_s / result.off.ops_per_s
    result.errors = after.shared.errors - before.shared.errors
    result.skipped = after.shared.skipped - before.shared.skipped
    result.served_local = after.served_local - before.served_local


def _interleaved(sides: tuple[Op, Op], warmup: int, n: int) -> tuple[Summary, Summary]:
    """Run ``sides[0](i)`` and ``sides[1](i)`` for each ``i`` of ``warmup + n``, the two
    in turn (who goes first alternating); each side's figures over its last ``n`` calls."""
    latencies: tuple[list[float], list[float]] = ([], [])
    cpu = [0.0, 0.0]
    clock, process = time.perf_counter_ns, time.process_time
    for i in range(warmup + n):
        if i == warmup:
            gc.collect()  # (as timing.run_side does before a side's round)
        for side in (i % 2, 1 - i % 2):
            c0, t0 = process(), clock()
            sides[side](i)
            t1, c1 = clock(), process()
            if i >= warmup:
                latencies[side].append(t1 - t0)
                cpu[side] += c1 - c0
    return _summary(latencies[0], cpu[0]), _summary(latencies[1], cpu[1])


def _summary(latencies: list[float], cpu_s: float) -> Summary:
    n, latencies = len(latencies), sorted(latencies)
    return Summary(
        ops_per_s=n / (sum(latencies) / 1e9),
        p50_ms=percentile(latencies, 0.50) / 1e6,
        p99_ms=percentile(latencies, 0.99) / 1e6,
        cpu_us=cpu_s / n * 1e6,
    )


def _seed(db: Any, tenant: str, prefix: str, count: int) -> list[str]:
    value, ids = agent_state(), [f"{prefix}-{i}" for i in range(count)]
    with db.unit_of_work(tenant) as uow:
        for state_id in ids:
            uow.states.save(state_id, value)
    return ids


def _warm(db: Any, tenant: str, ids: list[str]) -> None:
    channel = db.cache.channel if db.cache is not None else None
    if channel is not None and not channel.wait_live(5):
        raise RuntimeError("the invalidation channel on the throwaway Redis did not come up")
    for state_id in ids:
        _load(db, tenant, state_id)
        _load(db, tenant, state_id)  # (a hit, with the cache)


def _load(db: Any, tenant: str, state_id: str) -> Any:
    with db.unit_of_work(tenant) as uow:
        loaded = uow.states.load(state_id)
    if loaded is None:
        raise RuntimeError(f"state {state_id} is missing")
    return loaded
