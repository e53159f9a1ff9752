"""The benchmark harness still runs: a few cases with a handful of operations each.

It asserts that every side ran, counted its round trips and rendered, never timings.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

import psycopg
import pytest

from benchmarks import async_concurrency, async_section, cache_section, langgraph_section, report
from benchmarks.async_core import open_async_bench, run_async_cases
from benchmarks.core import Bench
from benchmarks.env import bench_env
from benchmarks.report import Profile, Result, markdown
from benchmarks.runner import run_cases, select

SMOKE_CASES = ["uow.empty", "state.save", "state.load", "store.get", "lease"]
# The sync cases the asyncio section measures again (issue 12: the same set).
_SYNC_TWINS = [
    "state.save",
    "state.load",
    "state.load_version",
    "store.get",
    "store.set",
    "workflow.get",
    "artifact.save_1 KiB",
    "artifact.load_1 KiB",
    "uow.empty",
]


def test_harness_runs_cases_and_cleans_up(postgres_server: str, redis_url: str) -> None:
    with bench_env(postgres_server, redis_url) as env, ExitStack() as stack:
        bench = Bench.open(env, stack, langgraph=False)
        rows = run_cases(bench, select(SMOKE_CASES), n=3, repeat=1, warmup=1, log=False)
        database = env.runtime_dsn.rsplit("/", 1)[1]
    assert sorted(r.case.key for r in rows) == sorted(SMOKE_CASES)
    for row in rows:
        assert row.error is None, row.error
        assert row.comparison is not None and row.comparison.ratio is not None
        assert row.ours_counts is not None
        if row.base_counts is not None:  # (a driver baseline: BEGIN + entry, ..., COMMIT)
            # ours defers BEGIN and the entry to the first statement: one round trip fewer
            assert row.ours_counts.round_trips < row.base_counts.round_trips, row.case.key
    empty = next(r for r in rows if r.case.key == "uow.empty")
    assert empty.base_counts is not None and empty.base_counts.round_trips == 2  # BEGIN; COMMIT
    assert empty.ours_counts is not None and empty.ours_counts.round_trips == 0  # nothing sent
    text = markdown(Result(profile=Profile.quick(), ops=3, repeat=1, rows=rows))
    assert "| empty unit of work |" in text and "### Targets" in text
    with psycopg.connect(postgres_server) as conn:  # the throwaway database is gone
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        assert gone.fetchone() is None


def test_asyncio_section_runs_every_case_and_both_workloads(
    postgres_server: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = async_section.select(["async.*"])
    with bench_env(postgres_server, redis_url) as env, open_async_bench(env) as bench:
        rows = run_async_cases(bench, cases, n=3, repeat=1, warmup=1, log=False)
        mixes = async_concurrency.selected(None)
        concurrency = async_concurrency.run(bench, mixes, per_task=1, rounds=1, log=False)
    assert {r.case.key for r in rows} == {f"async.{key}" for key in _SYNC_TWINS}
    for row in rows:
        assert row.error is None, row.error
        assert row.comparison is not None and row.comparison.ratio is not None
        assert row.ours_counts is not None and row.base_counts is not None
        # BEGIN + entry, the statement, COMMIT; ours sends the first two together (and,
        # for an empty unit of work, nothing at all)
        fewer = row.base_counts.round_trips if row.case.key == "async.uow.empty" else 1
        assert row.ours_counts.round_trips == row.base_counts.round_trips - fewer, row.case.key
    assert [m.key for m in concurrency.mixes] == mixes
    for mix in concurrency.mixes:
        assert mix.error is None, mix.error
        assert mix.ratio is not None and mix.ours is not None and mix.ours.cpu_us > 0
    result = Result(profile=Profile.quick(), ops=3, repeat=1, async_rows=rows)
    result.concurrency = concurrency
    text = markdown(result)
    assert "| empty unit of work |" in text and "### 64 tasks on 8 connections" in text
    assert "async state save >= 0.8x raw psycopg AsyncConnection" in text
    # An asyncio-only run replaces the page's asyncio results and keeps its sync ones.
    monkeypatch.setattr(report, "machine", lambda: [])
    previous = report.page(result, f"# old\n\n{report.SYNC_HEADING}then)\n\nsync figures\n")
    assert "sync figures" in previous and report.ASYNC_HEADING in previous
    again = report.page(result, previous)
    assert again.count(report.ASYNC_HEADING) == 1 and "sync figures" in again


def test_cache_section_runs_and_renders(postgres_server: str, redis_url: str) -> None:
    """The read cache's section: staleness across real processes, hit ratios of a Zipf
    workload, and loads with a throwaway Redis killed (its redis-server started here)."""
    profile = replace(
        Profile.quick(), cache_versions=5, zipf_states=20, zipf_ops=100, ops=10, warmup=2
    )
    with bench_env(postgres_server, redis_url) as env:
        cache = cache_section.run(env, profile, cache_section.selected(["cache.*"]))
    s, z, o = cache.staleness, cache.zipf, cache.outage
    assert s is not None and s.error is None, s and s.error
    assert s.missed == 0 and s.regressions == 0 and s.received >= s.versions
    assert z is not None and z.error is None, z and z.error
    assert [r.label for r in z.runs] == ["cache off", "shared, cold", "shared, second process"]
    assert z.runs[1].served_local and z.runs[2].served_shared
    assert o is not None and o.error is None, o and o.error
    assert o.errors >= 1 and o.skipped > 0 and o.served_local == 0
    text = markdown(Result(profile=profile, ops=10, repeat=1, cache=cache))
    assert "### Read cache" in text and "state loads with Redis dead" in text


def test_langgraph_section_runs_and_renders(postgres_server: str, redis_url: str) -> None:
    """Our LangGraph adapter against langgraph-checkpoint-postgres: every workload ran on
    both sides, the bytes were read on both, and the targets rendered."""
    profile = replace(
        Profile.quick(), ops=3, repeat=1, warmup=1, lg_graph_ops=1, lg_turns=2, lg_items=8
    )
    with bench_env(postgres_server, redis_url) as env:
        lg = langgraph_section.run(env, profile, langgraph_section.selected(["langgraph.*"]))
    assert lg.error is None, lg.error
    assert [t.key for t in lg.timed] == [
        "langgraph.graph",
        *(f"langgraph.get_tuple.{cache}" for cache in ("off", "local", "shared")),
        *(f"langgraph.store.{op}" for op in ("put", "get", "search")),
    ]
    for timed in lg.timed:
        assert timed.error is None, timed.error
        c = timed.comparison
        assert c is not None and c.ratio is not None and c.baseline is not None
    assert [f.checkpoints for f in lg.footprints] == [14, 14, 14]  # 2 invokes of 7 each
    assert all(f.row_bytes > 0 and set(f.table_bytes) for f in lg.footprints)
    text = markdown(Result(profile=profile, ops=3, repeat=1, langgraph=lg))
    assert "### LangGraph" in text and "store asearch >= 1.0x AsyncPostgresStore" in text
