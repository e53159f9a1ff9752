"""Fast population of large data sets: clone rows our API wrote, in SQL, as the owner.

A template is written through the public API (so every column is what the API would
write: payload, checksum, sizes); ``clone`` then copies its rows with
``INSERT ... SELECT ... FROM generate_series`` and per-column overrides. It runs as the
table owner, whose ``owner_access`` policy sees every tenant's rows.
"""

from __future__ import annotations

from typing import Any

import psycopg


def columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not rows:
        raise RuntimeError(f"table {table!r} does not exist")
    return [r[0] for r in rows]


def clone(
    conn: psycopg.Connection[Any],
    table: str,
    *,
    where: str,
    params: dict[str, Any],
    series: tuple[int, int],
    overrides: dict[str, str],
) -> int:
    """Copy the rows of ``table`` matching ``where`` once per ``g`` in ``series``.

    ``overrides`` maps a column to an SQL expression that may use ``g`` (the series
    value) and the template row's columns as ``t.<column>``.
    """
    cols = columns(conn, table)
    unknown = set(overrides) - set(cols)
    if unknown:
        raise RuntimeError(f"{table} has no column(s) {sorted(unknown)}")
    select = ", ".join(overrides.get(c, f't."{c}"') for c in cols)
    names = ", ".join(f'"{c}"' for c in cols)
    sql = (
        f"INSERT INTO {table} ({names}) SELECT {select} "
        f"FROM {table} t, generate_series(%(g_from)s::int, %(g_to)s::int) g WHERE {where}"
    )
    cur = conn.execute(sql, {**params, "g_from": series[0], "g_to": series[1]})
    return cur.rowcount
