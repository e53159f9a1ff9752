"""Count what one operation sends to PostgreSQL.

Two views: SQLAlchemy's statement events (``before_cursor_execute`` plus the
``begin``/``commit``/``rollback`` events, since BEGIN and COMMIT are round trips the
events do not show as statements), and the wire itself: libpq's protocol trace, in
which every completed round trip is a turn from client messages to server messages. The trace
also sees what the events miss (the pool's pre-ping, psycopg's implicit BEGIN).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine, event

from persistence._warm import next_driver

Op = Callable[[int], object]


@dataclass(frozen=True)
class Counts:
    statements: float | None  # SQLAlchemy events per op (None for raw drivers)
    round_trips: float  # client-to-server turns per op (libpq trace)


class _Trace:
    """A libpq protocol trace of some connections into one temporary file."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="pbench-trace-")
        os.close(fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.traced: list[Any] = []

    def attach(self, pgconn: Any) -> None:
        if any(p is pgconn for p in self.traced):
            return
        pgconn.trace(self.fd)
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        self.traced.append(pgconn)

    def round_trips(self, offset: int = 0) -> int:
        """Client sends followed by server replies: each F-lines then B-lines turn is
        one wait for the server (also in pipeline mode, where one Sync or Flush may
        carry many statements)."""
        self.stop()  # PQuntrace flushes libpq's buffered trace stream
        trips, sending = 0, False
        with open(self.path, "rb") as f:
            f.seek(offset)
            for line in f:
                if line.startswith(b"F\t"):
                    sending = True
                elif line.startswith(b"B\t") and sending:
                    trips, sending = trips + 1, False
        return trips

    def size(self) -> int:
        for pgconn in self.traced:  # flush what the warm-up wrote, keep tracing
            pgconn.untrace()
            pgconn.trace(self.fd)
            pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        return os.fstat(self.fd).st_size

    def stop(self) -> None:
        for pgconn in self.traced:
            with contextlib.suppress(Exception):  # the connection may be closed by now
                pgconn.untrace()
        self.traced.clear()

    def close(self) -> None:
        self.stop()
        os.close(self.fd)
        os.unlink(self.path)


@contextmanager
def _sqlalchemy_counter(engine: Engine, trace: _Trace) -> Iterator[list[int]]:
    count = [0]

    def on_statement(*_: Any) -> None:
        count[0] += 1

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        # (the async engine's DBAPI connection is an adapter around psycopg's)
        trace.attach(getattr(dbapi_conn, "driver_connection", dbapi_conn).pgconn)

    hooks: list[tuple[Any, str, Callable[..., None]]] = [
        (engine, "before_cursor_execute", on_statement),
        (engine, "begin", on_statement),
        (engine, "commit", on_statement),
        (engine, "rollback", on_statement),
        (engine.pool, "checkout", on_checkout),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    parked = next_driver(engine)
    if parked is not None:  # kept warm by the last unit of work: the next one takes it
        on_checkout(parked)
    try:
        yield count
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def count_ours(engine: Engine, op: Op, *, k: int = 20, warmup: int = 8) -> Counts:
    """Statements (SQLAlchemy events) and round trips (libpq trace) per ``op`` call.

    The warm-up lets psycopg prepare its statements and the trace reach every pooled
    connection the op uses (tracing starts at a connection's first checkout).
    """
    trace = _Trace()
    try:
        with _sqlalchemy_counter(engine, trace) as count:
            for i in range(warmup):
                op(10_000_000 + i)
            count[0] = 0
            offset = trace.size()
            for i in range(k):
                op(20_000_000 + i)
            statements = count[0] / k
            trips = trace.round_trips(offset) / k
        return Counts(statements=statements, round_trips=trips)
    finally:
        trace.close()


def count_raw(conn: psycopg.Connection[Any], op: Op, *, k: int = 20, warmup: int = 8) -> Counts:
    """Round trips per ``op`` call of a raw psycopg baseline using ``conn``."""
    trace = _Trace()
    try:
        for i in range(warmup):
            op(30_000_000 + i)
        trace.attach(conn.pgconn)
        for i in range(k):
            op(40_000_000 + i)
        return Counts(statements=None, round_trips=trace.round_trips() / k)
    finally:
        trace.close()
