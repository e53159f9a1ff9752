"""The run's sizes (full or quick), its results, and the Markdown report."""

from __future__ import annotations

import datetime
import os
import pickle
import platform
import subprocess
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from benchmarks import cache_section, langgraph_section
from benchmarks.async_concurrency import ConcurrencyResult
from benchmarks.cache_section import CacheResult
from benchmarks.langgraph_section import LangGraphResult
from benchmarks.memory import MemoryResult
from benchmarks.page_text import ASYNC_METHOD, ASYNC_OPERATIONS_INTRO, METHOD, PAGE_HEAD, TUNING
from benchmarks.procs import ProcsResult
from benchmarks.runner import Row
from benchmarks.scale import ScaleResult
from benchmarks.scopes import ScopeResult


@dataclass(frozen=True)
class Profile:
    name: str
    ops: int
    repeat: int
    warmup: int
    versions: tuple[int, ...]
    search_states: tuple[int, ...]
    search_calls: int
    purge_states: int
    processes: tuple[int, ...]
    proc_seconds: float
    proc_rounds: int
    memory_bytes: int
    per_task: int = 25  # operations of each of the 64 tasks per round (asyncio concurrency)
    cache_versions: int = 200  # versions written while reader processes watch (staleness)
    cache_readers: int = 2  # reader processes
    zipf_states: int = 1_000  # states of the Zipf workload (hit ratios)
    zipf_ops: int = 10_000  # its operations per run
    lg_graph_ops: int = 6  # LangGraph graph workload: invoke + resume, per side per round
    lg_turns: int = 20  # invokes of the thread whose bytes per checkpoint are measured
    lg_items: int = 200  # items of the namespace the LangGraph store searches
    lg_rounds: int = 9  # rounds of each LangGraph workload at most (fewer if repeat is)

    @classmethod
    def full(cls) -> Profile:
        return cls(
            "full", 100, 21, 40, (1, 100, 10_000), (10_000, 100_000), 20, 100_000,
            (1, 2, 4), 4.0, 3, 50 << 20,
        )  # fmt: skip

    @classmethod
    def quick(cls) -> Profile:
        return cls(
            "quick", 40, 3, 5, (1, 100, 1_000), (1_000, 5_000), 5, 5_000,
            (1, 2, 4), 1.0, 1, 8 << 20, 3, 50, 2, 200, 2_000, 2, 5, 40,
        )  # fmt: skip


@dataclass
class Result:
    profile: Profile
    ops: int
    repeat: int
    rows: list[Row] = field(default_factory=list)
    scale: ScaleResult | None = None
    procs: ProcsResult | None = None
    memory: MemoryResult | None = None
    cache: CacheResult | None = None  # the read cache's section
    langgraph: LangGraphResult | None = None  # our adapter vs langgraph-checkpoint-postgres
    scopes: ScopeResult | None = None  # the server-side cost of verifying scope tokens
    async_rows: list[Row] = field(default_factory=list)  # the asyncio API's cases
    concurrency: ConcurrencyResult | None = None  # 64 tasks on 8 connections
    seconds: float = 0.0
    async_seconds: float = 0.0  # of which the asyncio section
    finished_at: str = ""  # UTC, set when the run ends

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows + self.async_rows if r.case.key == key), None)

    def has_sync(self) -> bool:
        return bool(self.rows) or any(
            (self.scale, self.procs, self.memory, self.cache, self.langgraph)
        )

    def has_async(self) -> bool:
        return bool(self.async_rows) or self.concurrency is not None


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _trips(row: Row) -> str:
    ours = row.ours_counts
    if ours is None:
        return "-"
    text = f"{ours.round_trips:g}"
    if ours.statements is not None:
        text += f" ({ours.statements:g} stmt)"
    if row.base_counts is not None:
        text += f" / {row.base_counts.round_trips:g}"
    return text


def cases_table(rows: list[Row]) -> list[str]:
    lines = [
        "| operation | baseline | ours ops/s | ours p50 ms | ours p99 ms "
        "| baseline ops/s | baseline p50 ms | baseline p99 ms | ratio | round trips ours / base "
        "| client CPU µs ours / base |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        c = row.comparison
        if c is None:
            lines.append(f"| {row.case.label} | {row.case.baseline} | unavailable: {row.error} "
                         "| | | | | | | | |")  # fmt: skip
            continue
        b = c.baseline
        base = f"{b.ops_per_s:,.0f} | {_ms(b.p50_ms)} | {_ms(b.p99_ms)}" if b else "- | - | -"
        ratio = f"{c.ratio:.2f}x" if c.ratio is not None else "-"
        cpu = f"{c.ours.cpu_us:,.0f} / {b.cpu_us:,.0f}" if b else f"{c.ours.cpu_us:,.0f}"
        lines.append(
            f"| {row.case.label} | {row.case.baseline} | {c.ours.ops_per_s:,.0f} "
            f"| {_ms(c.ours.p50_ms)} | {_ms(c.ours.p99_ms)} | {base} | {ratio} | {_trips(row)} "
            f"| {cpu} |"
        )
    return lines


def scale_section(s: ScaleResult) -> list[str]:
    lines = ["| scenario | figure |", "|---|---|"]
    for versions, summary in sorted(s.load_latest.items()):
        lines.append(
            f"| load latest, {versions:,} versions | {summary.ops_per_s:,.0f} ops/s, "
            f"p50 {_ms(summary.p50_ms)} ms, p99 {_ms(summary.p99_ms)} ms |"
        )
    for states, query, ms, n in s.search:
        lines.append(
            f"| search_by_tags {query} over {states:,} states (first page, {n} items) "
            f"| {_ms(ms)} ms per call |"
        )
    if s.purge is not None:
        states, seconds = s.purge
        lines.append(
            f"| purge_expired of {states:,} expired states | {seconds:.2f} s "
            f"({states / seconds:,.0f} states/s) |"
        )
    for name, error in s.errors.items():
        lines.append(f"| {name} | unavailable: {error} |")
    return lines


def procs_section(p: ProcsResult) -> list[str]:
    if p.error:
        return [f"Unavailable: {p.error}"]
    lines = [
        f"State saves on distinct states, {p.seconds:g} s per measurement, median of rounds.",
        "",
        "| processes | ours saves/s | raw psycopg saves/s |",
        "|--:|--:|--:|",
    ]
    for n in sorted(p.ours):
        lines.append(f"| {n} | {p.ours[n]:,.0f} | {p.raw.get(n, 0):,.0f} |")
    return lines


def memory_section(m: MemoryResult) -> list[str]:
    size = m.size >> 20

    def fig(value: float | None) -> str:
        return f"{value:.2f}x ({value * m.size / 2**20:,.0f} MiB)" if value is not None else "-"

    lines = [
        f"Peak RSS above the process's baseline while saving then loading a {size} MiB "
        "artifact (incompressible bytes), as a multiple of its size; the caller's own "
        "copy of the data is included, so 1x is the floor.",
        "",
        f"- ours (`uow.artifacts.save` / `load`): {fig(m.ours)}",
        f"- raw psycopg (`INSERT` / binary-cursor `SELECT` of a bytea): {fig(m.raw)}",
    ]
    if m.error:
        lines.append(f"- error: {m.error}")
    return lines


def concurrency_section(c: ConcurrencyResult) -> list[str]:
    lines = [
        f"{c.tasks} tasks in one process on one event loop, each doing {c.per_task} "
        f"operations per round on its own state or key; ours on `AsyncDatabase(pool_size="
        f"{c.connections}, max_overflow=0)`, the baseline on `psycopg_pool."
        f"AsyncConnectionPool(min_size={c.connections}, max_size={c.connections})`; "
        f"{c.rounds} rounds, the sides alternating, medians.",
        "",
        "| workload (per operation) | ours ops/s | baseline ops/s | ratio "
        "| client CPU µs ours / base |",
        "|---|--:|--:|--:|--:|",
    ]
    for m in c.mixes:
        if m.ours is None or m.raw is None or m.ratio is None:
            lines.append(f"| {m.label} | unavailable: {m.error} | | | |")
            continue
        lines.append(
            f"| {m.label} | {m.ours.ops_per_s:,.0f} | {m.raw.ops_per_s:,.0f} | {m.ratio:.2f}x "
            f"| {m.ours.cpu_us:,.0f} / {m.raw.cpu_us:,.0f} |"
        )
    return lines


def markdown(result: Result) -> str:
    """The run's figures: the sync part, then the asyncio part (each when it ran)."""
    parts = [sync_markdown(result)] if result.has_sync() else []
    if result.has_async():
        parts.append(async_markdown(result))
    return "\n".join(parts)


def _profile_line(result: Result, seconds: float) -> str:
    return (
        f"Profile `{result.profile.name}`: {result.ops} operations per side per round, "
        f"{result.repeat} rounds, ours and the baseline alternating; figures are medians "
        f"over the rounds. Run took {seconds:.0f} s."
    )


def sync_markdown(result: Result) -> str:
    from benchmarks.targets import targets_section

    out = [_profile_line(result, result.seconds - result.async_seconds)]
    if result.rows:
        out += ["", "### Operations", "", *cases_table(result.rows)]
    if result.scale is not None:
        out += ["", "### Scale", "", *scale_section(result.scale)]
    if result.procs is not None:
        out += ["", "### Processes", "", *procs_section(result.procs)]
    if result.memory is not None:
        out += ["", "### Memory", "", *memory_section(result.memory)]
    if result.cache is not None:
        out += ["", "### Read cache", "", *cache_section.lines(result.cache)]
    if result.langgraph is not None:
        out += ["", "### LangGraph", "", *langgraph_section.lines(result.langgraph)]
    if result.scopes is not None:
        from benchmarks import scopes

        out += ["", "### Scope tokens", "", *scopes.lines(result.scopes)]
    out += ["", "### Targets", "", *targets_section(result)]
    return "\n".join(out) + "\n"


def async_markdown(result: Result) -> str:
    from benchmarks.async_targets import targets_lines

    out = [_profile_line(result, result.async_seconds)]
    if result.async_rows:
        out += [
            "",
            "### Operations",
            "",
            ASYNC_OPERATIONS_INTRO,
            "",
            *cases_table(result.async_rows),
        ]
    if result.concurrency is not None:
        out += ["", "### 64 tasks on 8 connections", "", *concurrency_section(result.concurrency)]
    out += ["", "### Targets", "", *targets_lines(result)]
    return "\n".join(out) + "\n"


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "unknown"


def machine() -> list[str]:
    import psycopg
    import redis

    from benchmarks.env import ADMIN_URL, REDIS_URL

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with psycopg.connect(ADMIN_URL) as conn:
        pg: Any = conn.execute("SHOW server_version").fetchone()
    info: Any = redis.Redis.from_url(REDIS_URL).info("server")
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (`nproc`: {_version(['nproc'])}); shared machine",
        f"- memory: {mem:.1f} GiB",
        f"- PostgreSQL {pg[0]} and Redis {info['redis_version']}, both on 127.0.0.1",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__}, "
        f"SQLAlchemy {_pkg('sqlalchemy')}, langgraph-checkpoint-postgres "
        f"{_pkg('langgraph-checkpoint-postgres')}, {platform.platform()}",
    ]


def _pkg(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def save(result: Result, path: Path) -> None:
    """Keep a run's figures (cases without their builders) to render it again later."""
    rows = [replace(r, case=replace(r.case, build=_no_build)) for r in result.rows]
    path.write_bytes(pickle.dumps(replace(result, rows=rows)))


def load(path: Path) -> Result:
    result = pickle.loads(path.read_bytes())
    assert isinstance(result, Result)
    for f in fields(Result):  # a run saved before a field existed gets its default
        if not hasattr(result, f.name) and f.default_factory is not MISSING:
            setattr(result, f.name, f.default_factory())
    return result


def _no_build(bench: Any) -> Any:
    raise RuntimeError("a saved case cannot run")


SYNC_HEADING = "## Results ("
ASYNC_HEADING = "## Asyncio results ("


def page(result: Result, previous: str | None = None) -> str:
    """docs/performance.md: the prose, then the sync results and the asyncio results.

    A part this run did not measure is kept as it was in ``previous`` (the page being
    replaced), so ``--only 'async.*' --output docs/performance.md`` updates the asyncio
    results alone."""
    old_sync, old_async = _blocks(previous or "")
    sync = _block(SYNC_HEADING, result, sync_markdown(result)) if result.has_sync() else old_sync
    async_ = old_async
    if result.has_async():
        async_ = _block(ASYNC_HEADING, result, async_markdown(result))
    parts = [PAGE_HEAD, METHOD, ASYNC_METHOD, TUNING, sync, async_]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts if part)


def _block(heading: str, result: Result, body: str) -> str:
    stamp = result.finished_at or now_utc()
    return "\n".join([f"{heading}{stamp})", "", *machine(), "", body])


def _blocks(text: str) -> tuple[str, str]:
    """The sync and the asyncio results blocks of a page ("" for a missing one)."""
    sync_at, async_at = text.find(SYNC_HEADING), text.find(ASYNC_HEADING)
    sync = "" if sync_at < 0 else text[sync_at : async_at if async_at > sync_at else None]
    return sync, "" if async_at < 0 else text[async_at:]
