"""Scale: load latest with many versions, search_by_tags and purge_expired over many states."""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from benchmarks.bulk import clone
from benchmarks.core import Bench
from benchmarks.timing import Summary, percentile

if TYPE_CHECKING:
    from benchmarks.report import Profile


@dataclass
class ScaleResult:
    load_latest: dict[int, Summary] = field(default_factory=dict)  # versions -> timing
    search: list[tuple[int, str, float, int]] = field(default_factory=list)  # states, query, ms, n
    purge: tuple[int, float] | None = None  # states purged, seconds
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def load_ratio(self) -> float | None:
        """Median latency with the most versions over that with 1 (1.0 = no slowdown)."""
        if len(self.load_latest) < 2:
            return None
        few, many = min(self.load_latest), max(self.load_latest)
        return self.load_latest[many].p50_ms / self.load_latest[few].p50_ms


def _guard(result: ScaleResult, name: str, fn: Callable[[], None]) -> None:
    print(f"  scale: {name}", file=sys.stderr, flush=True)
    try:
        fn()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result.errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def run(bench: Bench, profile: Profile) -> ScaleResult:
    result = ScaleResult()
    _guard(result, "load latest", lambda: _load_latest(bench, profile, result))
    _guard(result, "search_by_tags", lambda: _search(bench, profile, result))
    _guard(result, "purge_expired", lambda: _purge(bench, profile, result))
    return result


def _owner(bench: Bench) -> psycopg.Connection[Any]:
    return psycopg.connect(bench.env.owner_dsn, autocommit=True)


def _where(bench: Bench, workspace_id: Any) -> tuple[str, dict[str, Any]]:
    return (
        "t.tenant_id = %(t)s AND t.workspace_id = %(w)s AND t.state_id = %(s)s",
        {"t": bench.tenant_id, "w": workspace_id, "s": "tmpl"},
    )


def _workspace(bench: Bench, slug: str) -> Any:
    from benchmarks.env import workspace_id

    with bench.db.admin() as admin:
        admin.workspaces.create(bench.env.tenant, slug)
    return workspace_id(bench.env, slug)


# -- load latest with 1, 100, 10,000 versions ------------------------------------------


def _load_latest(bench: Bench, profile: Profile, result: ScaleResult) -> None:
    from benchmarks.ops_states import ours_load
    from benchmarks.payloads import agent_state

    value = agent_state()
    with _owner(bench) as conn:
        for versions in profile.versions:
            state_id = f"versions-{versions}"
            with bench.db.unit_of_work(bench.env.tenant) as uow:
                uow.states.save(state_id, value)
            if versions > 1:
                where, params = _where(bench, bench.workspace_id)
                clone(
                    conn,
                    "state_versions",
                    where=where,
                    params={**params, "s": state_id},
                    series=(2, versions),
                    overrides={"version": "g", "parent_version": "g - 1"},
                )
                conn.execute(
                    "UPDATE state_heads SET last_version = %(n)s, latest_version = %(n)s, "
                    "parent_version = %(n)s - 1 WHERE tenant_id = %(t)s "
                    "AND workspace_id = %(w)s AND state_id = %(s)s",
                    {**params, "s": state_id, "n": versions},
                )
        conn.execute("ANALYZE state_heads, state_versions")
    # One load of each state in turn, so machine noise hits every version count alike.
    latencies: dict[int, list[float]] = {v: [] for v in profile.versions}
    for i in range(profile.warmup + profile.ops * profile.repeat):
        for versions in profile.versions:
            t0 = time.perf_counter_ns()
            ours_load(bench, f"versions-{versions}")
            if i >= profile.warmup:
                latencies[versions].append((time.perf_counter_ns() - t0) / 1e6)
    result.load_latest = {v: _summary(ms) for v, ms in latencies.items()}


def _summary(latencies_ms: list[float]) -> Summary:
    ordered = sorted(latencies_ms)
    mean = statistics.fmean(ordered)
    return Summary(
        ops_per_s=1000 / mean,
        p50_ms=percentile(ordered, 0.5),
        p99_ms=percentile(ordered, 0.99),
        cpu_us=0.0,
    )


# -- search_by_tags over 10,000 and 100,000 states -------------------------------------


def _populate_tagged(bench: Bench, workspace: str, states: int, *, expired: bool) -> Any:
    """``states`` states of one version each, tagged ``all`` and ``m<g % 100>``."""
    wid = _workspace(bench, workspace)
    ttl = 3600 if expired else None
    with bench.db.unit_of_work(bench.env.tenant, workspace) as uow:
        uow.states.save("tmpl", {"n": 0}, tags=["all", "m0"], ttl=ttl)
    where, params = _where(bench, wid)
    sid = "'s-' || g"
    past = {"expires_at": "now() - interval '1 hour'"} if expired else {}
    with _owner(bench) as conn, conn.transaction():
        clone(
            conn,
            "state_heads",
            where=where,
            params=params,
            series=(1, states - 1),
            overrides={"state_id": sid, **past},
        )
        tags = "json_build_array('all', 'm' || mod(g, 100))"
        clone(
            conn,
            "state_versions",
            where=where,
            params=params,
            series=(1, states - 1),
            overrides={"state_id": sid, "tags": tags, **past},
        )
        for tag, expr in (("all", "t.tag"), ("m0", "'m' || mod(g, 100)")):
            clone(
                conn,
                "state_tags",
                where=f"{where} AND t.tag = %(tag)s",
                params={**params, "tag": tag},
                series=(1, states - 1),
                overrides={"state_id": sid, "tag": expr},
            )
    with _owner(bench) as conn:
        conn.execute("ANALYZE state_heads, state_versions, state_tags")
    return wid


def _search(bench: Bench, profile: Profile, result: ScaleResult) -> None:
    queries: list[tuple[str, list[str], str]] = [
        ("all of [all, m7]", ["all", "m7"], "all"),
        ("any of [m7, m8]", ["m7", "m8"], "any"),
    ]
    for states in profile.search_states:
        workspace = f"search-{states}"
        _populate_tagged(bench, workspace, states, expired=False)
        for label, tags, match in queries:

            def search(
                i: int, tags: list[str] = tags, match: Any = match, ws: str = workspace
            ) -> Any:
                with bench.db.unit_of_work(bench.env.tenant, ws) as uow:
                    return uow.states.search_by_tags(tags, match=match)

            page = search(0)
            timings = []
            for _ in range(profile.search_calls):
                t0 = time.perf_counter()
                search(0)
                timings.append((time.perf_counter() - t0) * 1000)
            result.search.append((states, label, statistics.median(timings), len(page.items)))


# -- purge_expired of 100,000 states ---------------------------------------------------


def _purge(bench: Bench, profile: Profile, result: ScaleResult) -> None:
    states = profile.purge_states
    workspace = f"purge-{states}"
    _populate_tagged(bench, workspace, states, expired=True)
    with _owner(bench) as conn:
        # the template was saved with a TTL in the future: expire it too
        conn.execute(
            "UPDATE state_heads SET expires_at = now() - interval '1 hour' WHERE state_id = 'tmpl'"
        )
        conn.execute(
            "UPDATE state_versions SET expires_at = now() - interval '1 hour' "
            "WHERE state_id = 'tmpl'"
        )
    purged = 0
    t0 = time.perf_counter()
    with bench.db.unit_of_work(bench.env.tenant, workspace) as uow:
        outcome = uow.states.purge_expired()
    purged = int(outcome if isinstance(outcome, int) else getattr(outcome, "states", 0))
    seconds = time.perf_counter() - t0
    with _owner(bench) as conn:
        left = conn.execute(
            "SELECT count(*) FROM state_heads h JOIN workspaces w ON w.id = h.workspace_id "
            "WHERE w.slug = %s",
            (workspace,),
        ).fetchone()
    if left is not None and left[0]:
        raise RuntimeError(f"purge_expired left {left[0]} states behind (returned {purged})")
    result.purge = (states, seconds)
