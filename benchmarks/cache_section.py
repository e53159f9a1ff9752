"""The read cache's section of a run (docs/cache.md): cross-process staleness, hit ratios
of a Zipf workload, and state loads while Redis is dead. ``--skip cache`` leaves it out;
``--only`` runs the parts whose key matches (``cache.*``: all three)."""

from __future__ import annotations

import fnmatch
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmarks import cache_outage, cache_staleness, cache_zipf
from benchmarks.cache_outage import OutageResult
from benchmarks.cache_staleness import StalenessResult
from benchmarks.cache_zipf import ZipfResult, ZipfRun
from benchmarks.env import BenchEnv
from benchmarks.page_text import CACHE_INTRO

if TYPE_CHECKING:
    from benchmarks.report import Profile

#: The parts, by key (what --only matches and --list shows): (label, compared with).
PARTS: dict[str, tuple[str, str]] = {
    "cache.staleness": (
        "cross-process staleness p50/p99 (reader processes)",
        "cache_max_stale",
    ),
    "cache.zipf": ("hit ratios and ops/s, Zipf workload with 5% saves", "persistence, cache off"),
    "cache.redis_down": ("state loads with Redis dead (cache='shared')", "persistence, cache off"),
}
#: An outage's p99 load latency at most this multiple of the uncached one (the issue's).
OUTAGE_P99 = 1.5


@dataclass
class CacheResult:
    staleness: StalenessResult | None = None
    zipf: ZipfResult | None = None
    outage: OutageResult | None = None
    seconds: float = 0.0


def selected(patterns: list[str] | None) -> list[str]:
    """The parts whose key matches one of the glob ``patterns`` (all when none given)."""
    if not patterns:
        return list(PARTS)
    return [key for key in PARTS if any(fnmatch.fnmatch(key, p) for p in patterns)]


def listing() -> list[tuple[str, str, str]]:
    return [(key, label, baseline) for key, (label, baseline) in PARTS.items()]


def run(env: BenchEnv, profile: Profile, parts: list[str]) -> CacheResult:
    print(f"read cache: {', '.join(parts)}", file=sys.stderr, flush=True)
    result, started = CacheResult(), time.monotonic()
    if "cache.staleness" in parts:
        versions, readers = profile.cache_versions, profile.cache_readers
        result.staleness = cache_staleness.run(env, versions, readers)
    if "cache.zipf" in parts:
        result.zipf = cache_zipf.run(env, profile.zipf_states, profile.zipf_ops)
    if "cache.redis_down" in parts:  # 3,000 loads a side in full, 1,200 in quick
        result.outage = cache_outage.run(env, n=30 * profile.ops, warmup=profile.warmup)
    result.seconds = time.monotonic() - started
    return result


def _ms(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"


def _pct(part: int | None, whole: int) -> str:
    return "-" if part is None or not whole else f"{100 * part / whole:.1f}%"


def staleness_lines(s: StalenessResult) -> list[str]:
    head = "**Cross-process staleness.** "
    if s.error:
        return [f"{head}Unavailable: {s.error}"]
    bound = s.max_stale_s * 1000
    return [
        f"{head}{s.versions} versions of one state, saved by this process through "
        f"`Database(cache='shared')` 10 to 30 ms apart; {s.readers} reader processes, each "
        f"loading it in a loop ({s.loads_per_s:,.0f} loads/s each, one unit of work per load). "
        "Lag: from the writer's commit returning to a reader first serving that version "
        f"or a newer one, `time.monotonic()` on both sides, over {s.readers} x {s.versions} "
        f"pairs. {s.seconds:.1f} s.",
        "",
        "| p50 ms | p99 ms | max ms | p99 vs `cache_max_stale` | not served in time "
        "| reads that went back | invalidations received (fewest) |",
        "|--:|--:|--:|--:|--:|--:|--:|",
        f"| {_ms(s.p50_ms)} | {_ms(s.p99_ms)} | {_ms(s.max_ms)} "
        f"| {s.p99_ms / bound:.2%} of {s.max_stale_s:g} s | {s.missed} | {s.regressions} "
        f"| {s.received} of {s.versions} |",
    ]


def zipf_lines(z: ZipfResult) -> list[str]:
    head = (
        f"**Hit ratios.** {z.ops:,} operations over {z.states:,} states, popularity "
        f"Zipf(s={z.s:g}), {z.write_share:.0%} of them saves, one unit of work each, one "
        "process. *Cache off* on states of its own; *shared, cold*: `cache='shared'` "
        "(default in-process size) on states no tier holds; *shared, second process*: a "
        "new `Database(cache='shared')` on the same states after the cold run, another "
        "draw of the workload. Shares of the loads served by each tier "
        f"(`db.cache.stats()`). {z.seconds:.1f} s."
    )
    if not z.runs:
        return [f"{head} Unavailable: {z.error}"]
    base = next((r for r in z.runs if r.served_local is None), None)
    lines = [
        head,
        "",
        "| run | states touched | in-process | Redis (of lookups reaching it) | database "
        "| overall hit ratio | refused as too old or stale | ops/s | vs cache off "
        "| client CPU µs/op |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [_zipf_row(r, base.ops_per_s if base is not None else None) for r in z.runs]
    if z.error:
        lines += ["", f"Error: {z.error}"]
    return lines


def _zipf_row(r: ZipfRun, base_ops: float | None) -> str:
    cached = r.served_local is not None
    served = (r.served_local or 0) + (r.served_shared or 0) if cached else None
    reached = r.redis_hits + r.redis_misses
    redis = _pct(r.served_shared, r.loads) if cached else "-"
    if cached and reached:
        redis += f" ({_pct(r.redis_hits, reached)})"
    db_share = _pct(r.loads - served, r.loads) if served is not None else "100%"
    refused = f"{r.refused_stale:,}" if cached else "-"
    vs = f"{r.ops_per_s / base_ops:.2f}x" if base_ops else "-"
    return (
        f"| {r.label} | {r.distinct:,} | {_pct(r.served_local, r.loads)} | {redis} "
        f"| {db_share} | {_pct(served, r.loads)} | {refused} | {r.ops_per_s:,.0f} | {vs} "
        f"| {r.cpu_us:,.0f} |"
    )


def outage_lines(o: OutageResult) -> list[str]:
    head = "**Redis dead.** "
    if o.dead is None or o.off is None:
        return [f"{head}Unavailable: {o.error}"]
    p99 = o.p99_ratio
    met = "met" if p99 is not None and p99 <= OUTAGE_P99 else "MISSED"
    return [
        f"{head}`Database(cache='shared')` on a throwaway redis-server, warmed up, then the "
        f"server killed; loads of states never loaded before (each one misses the "
        f"in-process tier and reaches the database) against the same loads with the cache "
        f"off, {o.ops:,} per side after {o.warmup} of warm-up, the two sides alternating "
        "load by load (so a stall of the machine hits both), figures over all loads. While "
        f"Redis was dead the cache counted {o.errors} Redis error(s) (its tries) and skipped "
        f"{o.skipped} call(s), its breaker set to {o.breaker_s:g} s (default "
        f"{o.default_breaker_s:g} s) so that the loads include its tries again; "
        f"{o.served_local} load(s) served in-process.",
        "",
        "| side | ops/s | p50 ms | p99 ms | client CPU µs/op |",
        "|---|--:|--:|--:|--:|",
        *(
            f"| {label} | {s.ops_per_s:,.0f} | {_ms(s.p50_ms)} | {_ms(s.p99_ms)} "
            f"| {s.cpu_us:,.0f} |"
            for label, s in (("cache='shared', Redis dead", o.dead), ("cache off", o.off))
        ),
        "",
        f"p99 with Redis dead / p99 uncached: **{p99:.2f}x** (target <= {OUTAGE_P99}x: "
        f"**{met}**); p50 {o.dead.p50_ms / o.off.p50_ms:.2f}x, throughput "
        f"{o.ratio or 0:.2f}x, client CPU {o.dead.cpu_us / o.off.cpu_us:.2f}x.",
    ]


def lines(c: CacheResult) -> list[str]:
    """The section's Markdown (the parts that ran)."""
    out = [CACHE_INTRO.format(seconds=c.seconds)]
    if c.staleness is not None:
        out += ["", *staleness_lines(c.staleness)]
    if c.zipf is not None:
        out += ["", *zipf_lines(c.zipf)]
    if c.outage is not None:
        out += ["", *outage_lines(c.outage)]
    return out
