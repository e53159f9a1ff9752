"""The benchmark harness still runs: a few cases with a handful of operations each.

It asserts that every side ran, counted its round trips and rendered, never timings.
"""

from __future__ import annotations

from contextlib import ExitStack

import psycopg

from benchmarks.core import Bench
from benchmarks.env import bench_env
from benchmarks.report import Profile, Result, markdown
from benchmarks.runner import run_cases, select

SMOKE_CASES = ["uow.empty", "state.save", "state.load", "store.get", "lease"]


def test_harness_runs_cases_and_cleans_up(postgres_server: str, redis_url: str) -> None:
    with bench_env(postgres_server, redis_url) as env, ExitStack() as stack:
        bench = Bench.open(env, stack, langgraph=False)
        rows = run_cases(bench, select(SMOKE_CASES), n=3, repeat=1, warmup=1, log=False)
        database = env.runtime_dsn.rsplit("/", 1)[1]
    assert sorted(r.case.key for r in rows) == sorted(SMOKE_CASES)
    for row in rows:
        assert row.error is None, row.error
        assert row.comparison is not None and row.comparison.ratio is not None
        assert row.ours_counts is not None and row.ours_counts.round_trips > 0
    empty = next(r for r in rows if r.case.key == "uow.empty")
    assert empty.base_counts is not None and empty.base_counts.round_trips == 2  # BEGIN; COMMIT
    text = markdown(Result(profile=Profile.quick(), ops=3, repeat=1, rows=rows))
    assert "| empty unit of work |" in text and "### Targets" in text
    with psycopg.connect(postgres_server) as conn:  # the throwaway database is gone
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        assert gone.fetchone() is None
