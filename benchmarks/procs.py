"""Throughput of state saves on distinct states with 1, 2 and 4 processes (ours and raw)."""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmarks.env import BenchEnv

if TYPE_CHECKING:
    from benchmarks.report import Profile

_READY_TIMEOUT = 120.0  # seconds for a spawned process to import and warm up


@dataclass
class ProcsResult:
    ours: dict[int, float] = field(default_factory=dict)  # processes -> saves/s (median)
    raw: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def scaling(self, side: str = "ours") -> float | None:
        data = self.ours if side == "ours" else self.raw
        if 1 not in data or len(data) < 2:
            return None
        return data[max(data)] / data[1]


def _worker(env: BenchEnv, side: str, index: int, go: Any, seconds: float, out: Any) -> None:
    """Warm up, report ready, wait for ``go``, then save distinct states for ``seconds``."""
    from contextlib import ExitStack

    from benchmarks.core import Bench
    from benchmarks.ops_states import ours_save, raw_save
    from benchmarks.payloads import agent_state

    try:
        with ExitStack() as stack:
            bench = Bench.open(env, stack, langgraph=False)
            value = agent_state()
            save = ours_save if side == "ours" else raw_save
            for i in range(5):
                save(bench, f"{side}-p{index}-warm-{i}", value)
            out.put(("ready", index))
            go.wait(timeout=120)
            done, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                save(bench, f"{side}-p{index}-{done % 256}", value)
                done += 1
            out.put(("done", done))
    except Exception:
        traceback.print_exc()
        out.put(("done", -1))


def _measure(env: BenchEnv, side: str, processes: int, seconds: float) -> float:
    """Saves per second of ``processes`` workers started together after their warm-up."""
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(target=_worker, args=(env, side, i, go, seconds, out)) for i in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        messages = [out.get(timeout=_READY_TIMEOUT) for _ in workers]
        if any(kind != "ready" for kind, _ in messages):
            raise RuntimeError(f"a {side} worker failed before it was ready")
        go.set()
        counts = [out.get(timeout=seconds + 60)[1] for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    if min(counts) < 0:
        raise RuntimeError(f"a {side} worker failed (see its traceback above)")
    return float(sum(counts)) / seconds


def run(env: BenchEnv, profile: Profile) -> ProcsResult:
    result = ProcsResult(seconds=profile.proc_seconds)
    print("  processes: state saves on distinct states", file=sys.stderr, flush=True)
    try:
        for side in ("ours", "raw"):
            samples: dict[int, list[float]] = {p: [] for p in profile.processes}
            for round_ in range(profile.proc_rounds):
                order = profile.processes if round_ % 2 == 0 else profile.processes[::-1]
                for p in order:
                    samples[p].append(_measure(env, side, p, profile.proc_seconds))
            target = result.ours if side == "ours" else result.raw
            target.update({p: statistics.median(s) for p, s in samples.items()})
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result.error = f"{type(exc).__name__}: {exc}"
    return result
