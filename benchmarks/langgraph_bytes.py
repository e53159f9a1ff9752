"""Bytes stored per checkpoint: one thread run on each side, then its rows' sizes.

Row bytes: ``sum(pg_column_size(t.*))`` of the thread's rows in each of the side's
tables (a row as PostgreSQL stores it: values compressed by TOAST stay compressed,
out-of-line ones are counted whole), over the checkpoints the thread has. Relation
bytes: how much ``pg_total_relation_size`` of those tables (heap, TOAST, indexes) grew
while the thread ran, over the same count (whole pages: a coarser figure). Our rows are
read as the owner role (its ``owner_access`` policy sees every tenant's rows).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from benchmarks.langgraph_sides import Sides, chain_graph, run_thread

OURS_TABLES = ("lg_checkpoints", "lg_channels", "lg_blobs", "lg_writes", "lg_threads")
PEER_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


@dataclass(frozen=True)
class Footprint:
    """One side's thread: its checkpoints and what they take."""

    label: str
    checkpoints: int
    table_bytes: dict[str, int] = field(default_factory=dict)  # row bytes by table
    relation_bytes: int = 0  # growth of pg_total_relation_size over its tables

    @property
    def row_bytes(self) -> int:
        return sum(self.table_bytes.values())

    def per_checkpoint(self, total: int) -> float:
        return total / self.checkpoints if self.checkpoints else 0.0


def _relation_bytes(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> int:
    row = conn.execute(
        "SELECT sum(pg_total_relation_size(t::regclass))::bigint FROM unnest(%s::text[]) t",
        (list(tables),),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _row_bytes(conn: psycopg.Connection[Any], table: str, thread_id: str) -> int:
    sql = f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t WHERE t.thread_id = %s"
    row = conn.execute(sql.encode(), (thread_id,)).fetchone()
    return int(row[0]) if row else 0


def footprint(
    sides: Sides, label: str, saver: Any, dsn: str, tables: tuple[str, ...], turns: int
) -> Footprint:
    """Run one thread of ``turns`` invokes of the chain graph on ``saver``, then measure
    its rows in ``tables`` through ``dsn`` (the first table holds one row a checkpoint)."""
    thread_id = uuid.uuid4().hex
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = _relation_bytes(conn, tables)
        sides.run(run_thread(chain_graph(saver), thread_id, turns))
        after = _relation_bytes(conn, tables)
        count = conn.execute(
            f"SELECT count(*) FROM {tables[0]} WHERE thread_id = %s".encode(), (thread_id,)
        ).fetchone()
        sizes = {table: _row_bytes(conn, table, thread_id) for table in tables}
    return Footprint(label, int(count[0]) if count else 0, sizes, after - before)


def measure(sides: Sides, turns: int) -> list[Footprint]:
    """Ours as it is by default (zstd) and with compression off, then the peer's; first a
    thread of one invoke on each side, so that no side's relation growth includes the
    first pages of empty tables and indexes (and each starts from partly filled ones)."""
    env = sides.env
    for saver in (sides.saver(), sides.peer_saver):
        sides.run(run_thread(chain_graph(saver), uuid.uuid4().hex, turns=1))
    return [
        footprint(sides, "ours, default (compression='zstd')", sides.saver(), env.owner_dsn,
                  OURS_TABLES, turns),
        footprint(sides, "ours, compression='none'", sides.saver(compression="none"),
                  env.owner_dsn, OURS_TABLES, turns),
        footprint(sides, "AsyncPostgresSaver", sides.peer_saver, env.langgraph_dsn,
                  PEER_TABLES, turns),
    ]  # fmt: skip
