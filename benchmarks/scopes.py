"""The server-side cost of verifying a scope token (migration 0010), measured in the
server itself: a ``DO`` block run as the runtime role times N calls of what each policy
runs once per statement (``persistence_scope()`` in its sub-select: parse, one key and
tenant look-up, two ``sha256()``), against N of an empty sub-select; and a point read of
a store item under the policies (the runtime role, token set) against the same read as
the owner (whose ``owner_access`` policy is ``true``: no verification). Best of
``rounds`` for each, in microseconds per statement: server CPU, no network, no client.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from benchmarks.env import BenchEnv, scope_token

__all__ = ["ScopeResult", "lines", "run"]

_LOOP = """
DO $$
DECLARE t0 timestamptz; v uuid;
BEGIN
  t0 := clock_timestamp();
  FOR i IN 1..{n} LOOP
    {body};
  END LOOP;
  PERFORM set_config('bench.us', (extract(epoch FROM clock_timestamp() - t0) * 1e6 / {n})::text,
                     false);
END $$
"""
_VERIFY = "SELECT (SELECT s[1] FROM persistence_scope(false) AS s) INTO v"
_EMPTY = "SELECT (SELECT NULL::uuid) INTO v"
_READ = (
    "PERFORM value FROM store_items WHERE tenant_id = {t} AND workspace_id = {w} "
    "AND store = 'bench-scope' AND key_hash = 'x'"
)


@dataclass(frozen=True)
class ScopeResult:
    verify_us: float  # one verification (the InitPlan's call), less an empty sub-select
    read_rls_us: float  # a point read under the policies (runtime role)
    read_owner_us: float  # the same read as the owner (no verification)
    n: int


def _timed(conn: psycopg.Connection[object], body: str, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        conn.execute(_LOOP.format(n=n, body=body))  # type: ignore[arg-type]
        row = conn.execute("SELECT current_setting('bench.us')").fetchone()
        assert row is not None
        best = min(best, float(row[0]))
    return best


def run(env: BenchEnv, *, n: int = 5000, rounds: int = 5) -> ScopeResult:
    token = scope_token(env)
    with psycopg.connect(env.owner_dsn, autocommit=True) as owner:
        row = owner.execute(
            "SELECT t.id, w.id FROM tenants t JOIN workspaces w ON w.tenant_id = t.id "
            "WHERE t.slug = %s AND w.slug = 'default'",
            (env.tenant,),
        ).fetchone()
        assert row is not None
        read = _READ.format(t=f"'{row[0]}'", w=f"'{row[1]}'")
        read_owner = _timed(owner, read, n, rounds)
    with psycopg.connect(env.runtime_dsn, autocommit=True) as runtime:
        runtime.execute("SELECT set_config('persistence.scope', %s, false)", (token,))
        verify = _timed(runtime, _VERIFY, n, rounds) - _timed(runtime, _EMPTY, n, rounds)
        read_rls = _timed(runtime, read, n, rounds)
    return ScopeResult(verify, read_rls, read_owner, n)


def lines(s: ScopeResult) -> list[str]:
    return [
        "Server time per statement, measured inside PostgreSQL (a `DO` loop of "
        f"{s.n:,} statements, best of 5; no network, no client):",
        "",
        "| what | µs per statement |",
        "|---|--:|",
        f"| one scope token verification (`persistence_scope()`, once per statement "
        f"and table) | {s.verify_us:.1f} |",
        f"| a store item point read under the scope policies (runtime role) "
        f"| {s.read_rls_us:.1f} |",
        f"| the same read as the owner (no verification) | {s.read_owner_us:.1f} |",
        "",
        "A statement pays one verification for each table its policies apply to (an "
        "`InitPlan`, not one per row); the raw-driver baselines above set the same token "
        "and pay the same, so the ratios compare like with like.",
    ]
