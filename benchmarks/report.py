"""The run's sizes (full or quick), its results, and the Markdown report."""

from __future__ import annotations

import datetime
import os
import pickle
import platform
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.memory import MemoryResult
from benchmarks.procs import ProcsResult
from benchmarks.runner import Row
from benchmarks.scale import ScaleResult


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

    @classmethod
    def full(cls) -> Profile:
        return cls(
            "full", 400, 5, 40, (1, 100, 10_000), (10_000, 100_000), 20, 100_000,
            (1, 2, 4), 4.0, 3, 50 << 20,
        )  # fmt: skip

    @classmethod
    def quick(cls) -> Profile:
        return cls(
            "quick", 40, 3, 5, (1, 100, 1_000), (1_000, 5_000), 5, 5_000,
            (1, 2, 4), 1.0, 1, 8 << 20,
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
    seconds: float = 0.0
    finished_at: str = ""  # UTC, set when the run ends

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.case.key == key), None)


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


def markdown(result: Result) -> str:
    from benchmarks.targets import targets_section

    out = [
        f"Profile `{result.profile.name}`: {result.ops} operations per side per round, "
        f"{result.repeat} rounds, ours and the baseline alternating; figures are medians "
        f"over the rounds. Run took {result.seconds:.0f} s.",
        "",
        "### Operations",
        "",
        *cases_table(result.rows),
    ]
    if result.scale is not None:
        out += ["", "### Scale", "", *scale_section(result.scale)]
    if result.procs is not None:
        out += ["", "### Processes", "", *procs_section(result.procs)]
    if result.memory is not None:
        out += ["", "### Memory", "", *memory_section(result.memory)]
    out += ["", "### Targets", "", *targets_section(result)]
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


PAGE_HEAD = """# Performance

How fast `persistence` is against what users would otherwise pick: SQL written by
hand with psycopg 3, raw redis-py for leases, and LangGraph's `PostgresStore`. All
sides run in the same run, on the same PostgreSQL server and Redis, with the same
payloads; ours runs as production does, as the runtime role under row-level security.

## Reproduce

```bash
.venv/bin/pip install -e '.[bench]'     # langgraph-checkpoint-postgres (LangGraph baseline)
.venv/bin/python -m benchmarks --output docs/performance.md   # full run, ~10 minutes
.venv/bin/python -m benchmarks --quick                        # smoke run, under a minute
.venv/bin/python -m benchmarks --only 'state.*' --ops 1000    # some cases, more operations
.venv/bin/python -m benchmarks --list                         # the case keys
.venv/bin/python -m benchmarks --save run.pkl                 # keep the figures ...
.venv/bin/python -m benchmarks --render run.pkl --output docs/performance.md  # ... render later
.venv/bin/python -m benchmarks.profile state.save 1000        # cProfile (CPU time) of ours
```

It needs PostgreSQL on 127.0.0.1:5432 (the `postgres` superuser creates a throwaway
database, an owner role and a runtime role, like the test fixtures) and Redis on
127.0.0.1:6379 (keys under a unique prefix); everything is dropped at the end.
`PERSISTENCE_BENCH_DATABASE_URL` and `PERSISTENCE_BENCH_REDIS_URL` point elsewhere.
"""

METHOD = """## Method

- Each operation runs `--ops` times per side per round for `--repeat` rounds, ours and
  the baseline alternating (and who goes first alternating), after a warm-up. ops/s is
  operations over wall time of the round; p50 and p99 are per-operation latencies;
  every figure is the median over the rounds, and the ratio is the median of the
  per-round ratios ours / baseline (above 1: ours is faster).
- Every operation of ours is a whole unit of work as a service would use it
  (`with db.unit_of_work(tenant=...)`: enter the tenant, the operation, commit), on a
  pooled connection. Raw baselines use one psycopg connection, one transaction per
  operation that sets the tenant for RLS (`set_config('persistence.tenant_id', ...,
  true)`), prepared statements, and do the same work: JSON serialized and SHA-256
  checksummed, checksums verified on read, gap-free version numbers (head row bumped
  and version inserted in one statement).
- Round trips: libpq's protocol trace on both sides, counting each turn from
  client messages to server replies (one wait for the server; pipelined statements
  share one); `stmt` is what SQLAlchemy's events see: `before_cursor_execute` (our
  prepared statements on the driver connection report there too) plus the `begin` /
  `commit` events of transactions SQLAlchemy manages. A unit of work on PostgreSQL
  begins (`BEGIN` and the tenant entry in one query) and commits straight through
  libpq, so an empty one shows 0 statements for its 2 round trips. Client CPU is the
  benchmark process's CPU time per operation (the driver's and ours; the server's is
  not included).
- LangGraph's `PostgresStore` (autocommit, pipelined `put`/`get`) runs in its own
  database on the same server; it keeps one value per key, we keep every version.
"""


TUNING = """## How ours runs (what was tuned, issues 7 and 11)

- **One executor for every statement** (`persistence/_executor.py`): each operation's
  SQL is SQLAlchemy Core built from the models' tables, defined once as a `Statement`
  and compiled once per dialect (SQL text, parameter order, bind and result processors
  kept). On PostgreSQL it runs as a server-side prepared statement on the unit of
  work's psycopg connection, on a cursor kept per pooled connection; on SQLite on the
  unit of work's `sqlite3` connection. Statements whose SQL depends on the call (a
  page query with optional filters, an `IN` list) go through SQLAlchemy's own
  execution and its compiled cache on the same connection. Every statement shares the
  transaction, the tenant setting and row-level security, errors are translated in one
  place, and SQLAlchemy's `before_cursor_execute` / `after_cursor_execute` listeners
  (tracing, statement counts) see it. `prepared_statements=False` turns server-side
  preparing off (for PgBouncer in transaction mode before 1.21). A state save is one
  statement on PostgreSQL (head row, version and tags as data-modifying CTEs), a store
  set too (the item upsert, with the store row created in a CTE of it the first time).
- **BEGIN with the tenant entry, and COMMIT, straight through libpq**
  (`persistence/_enter.py`, `simple_query` in `persistence/_executor.py`): the unit of
  work sends `BEGIN; SELECT * FROM persistence_enter(...)` as one simple-protocol query
  (the slugs bound once per tenant and workspace), and `COMMIT` the same way, without
  a psycopg cursor; psycopg sees the transaction open and sends no `BEGIN` of its own.
- **Pool pre-ping → idle-only ping** (`persistence/_pool.py`, `pool_ping_after`,
  default 1 s): `pool_pre_ping` cost a round trip on every unit of work; now only a
  connection idle for longer is pinged (and replaced if dead).
- **No ORM session unless asked for** (`persistence/uow.py`): a PostgreSQL unit of work
  runs on a pooled `Connection` and builds its `Session` (bound to that connection,
  same transaction) only when a repository or `uow.session` needs one; savepoints emit
  `SAVEPOINT` at once so statements that bypass the session are covered by them.
- Where the remaining gap is: the unit of work's client CPU (the SQLAlchemy pool
  checkout and checkin, reading the tenant entry row, building records, exact-JSON
  validation of what it writes), and the tenant entry's server time
  (`persistence_enter()` resolves both slugs and checks suspension; the raw baselines
  set a tenant id they already know). `python -m benchmarks.profile CASE` shows where
  one case's client CPU goes.
"""


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def save(result: Result, path: Path) -> None:
    """Keep a run's figures (cases without their builders) to render it again later."""
    rows = [replace(r, case=replace(r.case, build=_no_build)) for r in result.rows]
    path.write_bytes(pickle.dumps(replace(result, rows=rows)))


def load(path: Path) -> Result:
    result = pickle.loads(path.read_bytes())
    assert isinstance(result, Result)
    return result


def _no_build(bench: Any) -> Any:
    raise RuntimeError("a saved case cannot run")


def page(result: Result, body: str) -> str:
    return "\n".join(
        [
            PAGE_HEAD,
            METHOD,
            TUNING,
            f"## Results ({result.finished_at or now_utc()})",
            "",
            *machine(),
            "",
            body,
        ]
    )
