"""Cross-process staleness of the read cache: how long after a writer's commit returns
another process serves the new version (docs/cache.md, "Bounded staleness").

This process writes one state ``versions`` times through ``Database(cache='shared')``,
a pause of 10 to 30 ms (random) after each commit, and notes ``time.monotonic()`` as
each commit's ``with`` block returns. Each reader is an OS process of its own
(``python -m benchmarks.cache_staleness``) with ``cache='shared'``, loading the state in
a loop, one unit of work per load, and noting when a load first serves a version at
least as new as each version written (a version it never saw, because a newer one came
first, counts from when the newer one was served). ``CLOCK_MONOTONIC`` is one clock for
every process of a Linux machine, so the two times compare; a difference below 0 is a
reader that read the new row before the writer's ``with`` returned.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.env import BenchEnv
from benchmarks.payloads import agent_state
from benchmarks.timing import percentile

STATE_ID = "cache-staleness"
_PAUSE = (0.010, 0.030)  # seconds between two commits (random, so nothing aliases)
_READY_TIMEOUT = 120.0  # seconds for a reader to start, import and warm up
_ROOT = Path(__file__).resolve().parent.parent  # where ``-m benchmarks...`` resolves


@dataclass
class StalenessResult:
    readers: int
    versions: int
    p50_ms: float = 0.0  # first served - the writer's commit return, over (reader, version)
    p99_ms: float = 0.0
    max_ms: float = 0.0
    max_stale_s: float = 0.0  # the database's cache_max_stale (the fallback bound)
    missed: int = 0  # (reader, version) pairs not served before the readers' deadline
    regressions: int = 0  # loads that served a version older than one served before
    loads_per_s: float = 0.0  # each reader's loads, the mean over the readers
    received: int = 0  # invalidations the readers received, the fewest of any reader
    seconds: float = 0.0
    error: str | None = None


def run(env: BenchEnv, versions: int, readers: int) -> StalenessResult:
    result = StalenessResult(readers=readers, versions=versions)
    started = time.monotonic()
    print(
        f"  cache staleness: {versions} versions, {readers} reader processes",
        file=sys.stderr,
        flush=True,
    )
    try:
        with env.database(cache="shared") as db:
            _measure(env, db, result)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    result.seconds = time.monotonic() - started
    return result


def _measure(env: BenchEnv, db: Any, result: StalenessResult) -> None:
    assert db.cache is not None and db.cache.channel is not None
    if not db.cache.channel.wait_live(5):
        raise RuntimeError("the writer's invalidation channel did not come up")
    result.max_stale_s = db.settings.cache_max_stale
    value = agent_state()
    first = _save(db, env.tenant, value)
    last = first + result.versions
    budget = result.versions * (_PAUSE[1] + 0.05) + 30
    job = {"env": env.__dict__, "state_id": STATE_ID, "last": last}
    job["deadline"] = time.monotonic() + _READY_TIMEOUT + budget
    procs = [_start_reader(job) for _ in range(result.readers)]
    try:
        for proc in procs:
            _expect_ready(proc)
        committed = _write(db, env.tenant, value, result.versions)
        reports = [_report(proc, timeout=budget) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
    _summarize(result, committed, reports)


def _save(db: Any, tenant: str, value: Any) -> int:
    with db.unit_of_work(tenant) as uow:
        version: int = uow.states.save(STATE_ID, value).version
    return version


def _write(db: Any, tenant: str, value: Any, versions: int) -> dict[int, float]:
    """Save ``versions`` new versions; when each commit's ``with`` returned (monotonic)."""
    rng, committed = random.Random(13), {}
    for _ in range(versions):
        version = _save(db, tenant, value)
        committed[version] = time.monotonic()
        time.sleep(rng.uniform(*_PAUSE))
    return committed


def _start_reader(job: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cache_staleness"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=_ROOT,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    return proc


def _line(stream: IO[str] | None, timeout: float) -> str:
    """The next line of a reader's stdout, within ``timeout`` seconds."""
    import select

    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"a reader said nothing for {timeout:g} s")
    line = stream.readline()
    if not line:
        raise RuntimeError("a reader exited early (see its traceback above)")
    return line


def _expect_ready(proc: subprocess.Popen[str]) -> None:
    if _line(proc.stdout, _READY_TIMEOUT).strip() != "ready":
        raise RuntimeError("a reader failed to warm up")


def _report(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(_line(proc.stdout, timeout))
    return report


def _summarize(
    result: StalenessResult, committed: dict[int, float], reports: list[dict[str, Any]]
) -> None:
    lags = []
    for report in reports:
        first = {int(v): t for v, t in report["first"]}
        for version, at in committed.items():
            if version in first:
                lags.append((first[version] - at) * 1000)
            else:
                result.missed += 1
        result.regressions += report["regressions"]
    if not lags:
        raise RuntimeError("no reader served any new version")
    lags.sort()
    result.p50_ms, result.p99_ms = percentile(lags, 0.50), percentile(lags, 0.99)
    result.max_ms = lags[-1]
    result.loads_per_s = sum(r["loads"] / r["seconds"] for r in reports) / len(reports)
    result.received = min(r["received"] for r in reports)


# -- the reader process -------------------------------------------------------------------


def _read(env: BenchEnv, state_id: str, last: int, deadline: float) -> dict[str, Any]:
    """Load ``state_id`` in a loop until version ``last`` is served (or ``deadline``);
    when each version was first served (monotonic)."""
    with env.database(cache="shared") as db:
        assert db.cache is not None and db.cache.channel is not None
        if not db.cache.channel.wait_live(10):
            raise RuntimeError("the reader's invalidation channel did not come up")
        tenant = env.tenant

        def load() -> int:
            with db.unit_of_work(tenant) as uow:
                loaded = uow.states.load(state_id)
            assert loaded is not None
            return loaded.meta.version

        seen = load()
        load()  # a hit: warm
        print("ready", flush=True)
        first: list[tuple[int, float]] = []
        loads = regressions = 0
        start = clock = time.monotonic()
        while seen < last and clock < deadline:
            version = load()
            clock = time.monotonic()
            loads += 1
            if version > seen:
                first += [(v, clock) for v in range(seen + 1, version + 1)]
                seen = version
            elif version < seen:
                regressions += 1
        received = db.cache.stats().invalidations_received
    return {
        "first": first,
        "loads": loads,
        "seconds": max(clock - start, 1e-9),
        "regressions": regressions,
        "received": received,
    }


if __name__ == "__main__":
    try:
        job = json.loads(sys.stdin.read())
        figures = _read(BenchEnv(**job["env"]), job["state_id"], job["last"], job["deadline"])
        print(json.dumps(figures), flush=True)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
