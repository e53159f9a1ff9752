"""Timing: ours and the baseline alternate in rounds; medians over the rounds."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Op = Callable[[int], object]
AsyncOp = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class Sample:
    """One side of one round: ``n`` operations."""

    ops_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # client CPU per operation (process time: no waiting counted)


@dataclass(frozen=True)
class Summary:
    """Medians over the rounds of one side."""

    ops_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: float

    @classmethod
    def of(cls, samples: list[Sample]) -> Summary:
        return cls(
            statistics.median(s.ops_per_s for s in samples),
            statistics.median(s.p50_ms for s in samples),
            statistics.median(s.p99_ms for s in samples),
            statistics.median(s.cpu_us for s in samples),
        )


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_side(op: Op, n: int, offset: int = 0) -> Sample:
    """Run ``op(i)`` ``n`` times; per-operation latencies with perf_counter_ns."""
    latencies: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()  # start every side from the same heap state; GC stays on, as in production
    cpu = time.process_time()
    start = clock()
    for i in range(offset, offset + n):
        t0 = clock()
        op(i)
        latencies.append(clock() - t0)
    return _sample(latencies, clock() - start, time.process_time() - cpu)


async def run_side_async(op: AsyncOp, n: int, offset: int = 0) -> Sample:
    """:func:`run_side` for a coroutine function, awaited one call after the other on the
    running event loop (the loop's own CPU, its scheduling included, is counted)."""
    latencies: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()
    cpu = time.process_time()
    start = clock()
    for i in range(offset, offset + n):
        t0 = clock()
        await op(i)
        latencies.append(clock() - t0)
    return _sample(latencies, clock() - start, time.process_time() - cpu)


def _sample(latencies: list[float], total_ns: float, cpu_s: float) -> Sample:
    n = len(latencies)
    latencies.sort()
    return Sample(
        ops_per_s=n / (total_ns / 1e9),
        p50_ms=percentile(latencies, 0.50) / 1e6,
        p99_ms=percentile(latencies, 0.99) / 1e6,
        cpu_us=cpu_s / n * 1e6,
    )


@dataclass(frozen=True)
class Comparison:
    ours: Summary
    baseline: Summary | None
    ratio: float | None  # median over rounds of ours ops/s / baseline ops/s


def compare(
    ours: Any,
    baseline: Any,
    *,
    n: int,
    repeat: int,
    warmup: int,
    run: Callable[[Any, int, int], Sample] = run_side,
) -> Comparison:
    """Alternate ours and the baseline for ``repeat`` rounds of ``n`` operations each.

    Who goes first alternates too, so drift on a shared machine hits both sides alike.
    Operation indexes keep increasing across rounds (fresh names where an op creates).
    ``run(side, n, offset)`` runs one side's round (default :func:`run_side`; the asyncio
    cases pass one that runs :func:`run_side_async` on their event loop).
    """
    counter = 0
    for side in (ours, baseline):
        if side is not None:
            run(side, warmup, counter)
            counter += warmup
    ours_samples: list[Sample] = []
    base_samples: list[Sample] = []
    for round_ in range(repeat):
        order = [("ours", ours), ("base", baseline)]
        if round_ % 2:
            order.reverse()
        for name, side in order:
            if side is None:
                continue
            sample = run(side, n, counter)
            counter += n
            (ours_samples if name == "ours" else base_samples).append(sample)
    ratio = None
    if base_samples:
        ratio = statistics.median(
            o.ops_per_s / b.ops_per_s for o, b in zip(ours_samples, base_samples, strict=True)
        )
    return Comparison(
        ours=Summary.of(ours_samples),
        baseline=Summary.of(base_samples) if base_samples else None,
        ratio=ratio,
    )
