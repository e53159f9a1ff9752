"""The asyncio section: what every async case gets (``AsyncBench``), the registry of async
cases, and how they run: one call after the other on one event loop, timed and counted
like the sync cases (``benchmarks.runner``)."""

from __future__ import annotations

import asyncio
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import psycopg

from benchmarks.env import BenchEnv, scope_token, tenant_id, workspace_id
from benchmarks.roundtrips import count_ours, count_raw
from benchmarks.runner import Row, run_each
from benchmarks.targets import MIN_RATIO
from benchmarks.timing import AsyncOp, Sample, compare, run_side_async
from persistence.database_async import AsyncDatabase

T = TypeVar("T")


@dataclass
class AsyncBench:
    """One event loop and what runs on it: our AsyncDatabase and a raw psycopg
    ``AsyncConnection`` (autocommit; transactions are explicit, like ours)."""

    env: BenchEnv
    loop: asyncio.Runner
    db: AsyncDatabase
    raw: psycopg.AsyncConnection[Any]
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID
    begin: bytes = b""  # the raw side's BEGIN with the tenant entry (begin_query)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` to its end on this bench's event loop."""
        return self.loop.run(_awaited(awaitable))

    def raw_tx(self, conn: psycopg.AsyncConnection[Any] | None = None) -> RawAsyncTx:
        """A raw transaction on ``conn`` (default: ``raw``), shaped like a unit of work."""
        return RawAsyncTx(self.raw if conn is None else conn, self.begin)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


@contextmanager
def open_async_bench(env: BenchEnv) -> Iterator[AsyncBench]:
    """An event loop with our AsyncDatabase and the raw connection open on it; all three
    closed on exit."""
    with asyncio.Runner() as loop:
        raw = loop.run(psycopg.AsyncConnection.connect(env.runtime_dsn, autocommit=True))
        db = env.async_database()
        ids = tenant_id(env), workspace_id(env)
        bench = AsyncBench(env, loop, db, raw, *ids, begin=begin_query(scope_token(env)))
        try:
            yield bench
        finally:
            loop.run(db.close())
            loop.run(raw.close())


def begin_query(token: str) -> bytes:
    """``BEGIN`` and the scope token set in one simple-protocol query (psycopg sends a
    query without parameters as it is), as our unit of work of a scope it entered before
    sends them in its first round trip: the policies verify the token on every statement
    of both sides (migration 0010)."""
    return f"BEGIN; SELECT set_config('persistence.scope', '{token}', true)".encode()


class RawAsyncTx:
    """``async with bench.raw_tx() as conn:`` BEGIN with the scope token set (one round
    trip), the caller's statements, COMMIT (one round trip): the round trips of a unit of
    work."""

    __slots__ = ("begin", "conn")

    def __init__(self, conn: psycopg.AsyncConnection[Any], begin: bytes):
        self.conn, self.begin = conn, begin

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        cursor = await self.conn.execute(self.begin)
        cursor.nextset()  # past BEGIN's result, to the token's
        row = await cursor.fetchone()
        if row is None or not row[0]:
            raise RuntimeError(f"scope not set: {row}")
        return self.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.conn.execute(b"ROLLBACK" if exc_type is not None else b"COMMIT")


@dataclass(frozen=True)
class AsyncCase:
    """One row of the asyncio table: our async operation against raw psycopg async."""

    key: str  # "async.<the sync case's key>"
    label: str
    baseline: str
    build: Callable[[AsyncBench], Awaitable[tuple[AsyncOp, AsyncOp]]]
    target: float | None = MIN_RATIO
    n_factor: float = 1.0


ASYNC_CASES: list[AsyncCase] = []
BuildT = Callable[[AsyncBench], Awaitable[tuple[AsyncOp, AsyncOp]]]


def async_case(
    key: str, label: str, baseline: str = "psycopg AsyncConnection"
) -> Callable[[BuildT], BuildT]:
    """Register an async case builder: ``await build(bench) -> (ours, baseline)``."""

    def register(build: BuildT) -> BuildT:
        ASYNC_CASES.append(AsyncCase(f"async.{key}", label, baseline, build))
        return build

    return register


def run_async_case(bench: AsyncBench, case: AsyncCase, *, n: int, repeat: int, warmup: int) -> Row:
    ops = max(5, int(n * case.n_factor))

    def timed(op: AsyncOp, count: int, offset: int) -> Sample:
        return bench.run(run_side_async(op, count, offset))

    def blocking(op: AsyncOp) -> Callable[[int], object]:
        return lambda i: bench.run(op(i))  # counting only: never timed

    try:
        ours, baseline = bench.run(case.build(bench))
        comparison = compare(ours, baseline, n=ops, repeat=repeat, warmup=warmup, run=timed)
        k = max(5, min(20, ops // 2))
        ours_counts = count_ours(bench.db.engine.sync_engine, blocking(ours), k=k)
        base_counts = count_raw(bench.raw, blocking(baseline), k=k)  # type: ignore[arg-type]
    except Exception as exc:  # one broken case must not hide the others
        traceback.print_exc(file=sys.stderr)
        return Row(case, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return Row(case, comparison, ours_counts, base_counts)


def run_async_cases(
    bench: AsyncBench,
    cases: list[AsyncCase],
    *,
    n: int,
    repeat: int,
    warmup: int,
    log: bool = True,
) -> list[Row]:
    return run_each(
        cases, lambda case: run_async_case(bench, case, n=n, repeat=repeat, warmup=warmup), log
    )
