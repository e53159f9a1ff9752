"""``python -m benchmarks``: ours against raw psycopg (sync and asyncio), redis-py and
LangGraph; see --help."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks import (
    async_section,
    cache_section,
    langgraph_section,
    memory,
    procs,
    report,
    scale,
    scopes,
)
from benchmarks.core import CASES, Bench
from benchmarks.env import bench_env
from benchmarks.runner import run_cases, select

SKIPPABLE = (
    "cases",
    "scale",
    "procs",
    "memory",
    "cache",
    "langgraph",
    "scopes",
)  # and the async ones


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark persistence against raw psycopg (sync and asyncio), redis-py "
        "and LangGraph "
        "on a throwaway database (PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379).",
    )
    parser.add_argument("--ops", type=int, default=None, help="operations per side per round")
    parser.add_argument("--repeat", type=int, default=None, help="rounds (median reported)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run under a minute (small scale)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="run only the cases whose key matches (repeatable), e.g. 'state.*', 'async.*'",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=[*SKIPPABLE, *async_section.SECTIONS],
        help="leave out a section (repeatable)",
    )
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--save", type=Path, help="also keep the figures in this file")
    parser.add_argument(
        "--render", type=Path, metavar="SAVED", help="render a --save file again, run nothing"
    )
    parser.add_argument("--list", action="store_true", help="list the case keys and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for c in CASES:
            print(f"{c.key:<28} {c.label} (vs {c.baseline})")
        sections = cache_section.listing() + langgraph_section.listing()
        for key, label, baseline in sections + async_section.listing():
            print(f"{key:<28} {label} (vs {baseline})")
        return 0
    if args.render:
        return _emit(report.load(args.render), args.output)
    profile = report.Profile.quick() if args.quick else report.Profile.full()
    n = args.ops or profile.ops
    repeat = args.repeat or profile.repeat
    started = time.monotonic()
    result = report.Result(profile=profile, ops=n, repeat=repeat)
    if _wants_sync(args):
        _run_sync(args, result, n, repeat)
    if _langgraph_parts(args):
        with bench_env() as env:  # a database of its own, its tables empty at the start
            result.langgraph = langgraph_section.run(env, profile, _langgraph_parts(args))
    async_started = time.monotonic()
    with bench_env() as env:  # a database of its own: the sync run's rows do not weigh
        async_section.run(env, result, only=args.only, skip=args.skip, n=n, repeat=repeat)
    result.async_seconds = time.monotonic() - async_started
    result.seconds = time.monotonic() - started
    result.finished_at = report.now_utc()
    if args.save:
        report.save(result, args.save)
    return _emit(result, args.output)


def _cache_parts(args: argparse.Namespace) -> list[str]:
    return cache_section.selected(args.only) if "cache" not in args.skip else []


def _langgraph_parts(args: argparse.Namespace) -> list[str]:
    return langgraph_section.selected(args.only) if "langgraph" not in args.skip else []


def _wants_sync(args: argparse.Namespace) -> bool:
    if ("cases" not in args.skip and select(args.only)) or _cache_parts(args):
        return True
    return not args.only and any(s not in args.skip for s in ("scale", "procs", "memory", "scopes"))


def _run_sync(args: argparse.Namespace, result: report.Result, n: int, repeat: int) -> None:
    profile = result.profile
    with bench_env() as env, ExitStack() as stack:
        bench = Bench.open(env, stack)
        if "cases" not in args.skip and select(args.only):
            print(f"cases ({n} ops x {repeat} rounds per side)", file=sys.stderr)
            result.rows = run_cases(
                bench, select(args.only), n=n, repeat=repeat, warmup=profile.warmup
            )
        if "scale" not in args.skip and not args.only:
            result.scale = scale.run(bench, profile)
        if "procs" not in args.skip and not args.only:
            result.procs = procs.run(env, profile)
        if "memory" not in args.skip and not args.only:
            result.memory = memory.run(env, profile)
        if "scopes" not in args.skip and not args.only:
            result.scopes = scopes.run(env)
        if _cache_parts(args):
            result.cache = cache_section.run(env, profile, _cache_parts(args))


def _emit(result: report.Result, output: Path | None) -> int:
    text = report.markdown(result)
    print(text)
    if output:
        previous = output.read_text() if output.exists() else None
        output.write_text(report.page(result, previous))
        print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
