"""Run the selected cases: timings in alternating rounds, then round-trip counts."""

from __future__ import annotations

import fnmatch
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

# Importing the case modules registers their cases, in this order in the table.
from benchmarks import ops_states, ops_data, ops_misc, ops_cache  # noqa: F401  # isort: skip
from benchmarks.core import CASES, Bench, Case
from benchmarks.roundtrips import Counts, count_ours, count_raw
from benchmarks.targets import MAX_CPU, OPERATIONS
from benchmarks.timing import Comparison, compare

if TYPE_CHECKING:
    from benchmarks.async_core import AsyncCase


@dataclass(frozen=True)
class Row:
    case: Case | AsyncCase
    comparison: Comparison | None = None
    ours_counts: Counts | None = None
    base_counts: Counts | None = None
    error: str | None = None

    @property
    def met(self) -> bool | None:
        """The case's ratio target (with its client CPU bound for the operations that have
        one, as in ``benchmarks.targets``); None when it has no target or no figure."""
        c = self.comparison
        if self.case.target is None or c is None or c.ratio is None:
            return None
        if c.ratio < self.case.target:
            return False
        if self.case.key in OPERATIONS and c.baseline is not None and c.baseline.cpu_us:
            return c.ours.cpu_us / c.baseline.cpu_us <= MAX_CPU
        return True


def select(patterns: list[str] | None) -> list[Case]:
    """Cases whose key matches one of the glob ``patterns`` (all when none given)."""
    if not patterns:
        return list(CASES)
    return [c for c in CASES if any(fnmatch.fnmatch(c.key, p) for p in patterns)]


def run_case(bench: Bench, case: Case, *, n: int, repeat: int, warmup: int) -> Row:
    ops = max(5, int(n * case.n_factor))
    try:
        ours, baseline = case.build(bench)
        comparison = compare(ours, baseline, n=ops, repeat=repeat, warmup=warmup)
        k = max(5, min(20, ops // 2))
        ours_counts = count_ours(bench.db.engine, ours, k=k)
        base_counts = count_raw(bench.raw, baseline, k=k) if case.raw_psycopg and baseline else None
    except Exception as exc:  # one broken case must not hide the others
        traceback.print_exc(file=sys.stderr)
        return Row(case, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return Row(case, comparison, ours_counts, base_counts)


def run_cases(
    bench: Bench, cases: list[Case], *, n: int, repeat: int, warmup: int, log: bool = True
) -> list[Row]:
    return run_each(
        cases, lambda case: run_case(bench, case, n=n, repeat=repeat, warmup=warmup), log
    )


CaseT = TypeVar("CaseT")


def run_each(cases: Sequence[CaseT], run: Callable[[CaseT], Row], log: bool) -> list[Row]:
    """``run(case)`` for each case in turn (the sync and the asyncio sections), each row's
    progress line on stderr when ``log``."""
    rows = []
    for case in cases:
        row = run(case)
        if log:
            print(progress(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def progress(row: Row) -> str:
    if row.error or row.comparison is None:
        return f"  {row.case.key:<28} unavailable: {row.error}"
    ratio = f"{row.comparison.ratio:.2f}x" if row.comparison.ratio is not None else "-"
    return f"  {row.case.key:<28} {row.comparison.ours.ops_per_s:9.0f} ops/s  ratio {ratio}"
