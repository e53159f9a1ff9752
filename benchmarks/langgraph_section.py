"""The LangGraph section of a run: our adapter (``persistence.langgraph``) against
langgraph-checkpoint-postgres's ``AsyncPostgresSaver`` and ``AsyncPostgresStore`` on the
same server, in one run, on one event loop. ``--skip langgraph`` leaves it out;
``--only`` runs the parts whose key matches (``langgraph.*``: all four)."""

from __future__ import annotations

import fnmatch
import functools
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks import langgraph_bytes
from benchmarks.env import BenchEnv
from benchmarks.langgraph_bytes import Footprint
from benchmarks.langgraph_sides import (
    CACHE_VARIANTS,
    NODES,
    Sides,
    get_tuple_ops,
    graph_ops,
    open_sides,
    store_ops,
)
from benchmarks.targets import Verdict
from benchmarks.timing import AsyncOp, Comparison, Sample, compare, run_side_async

if TYPE_CHECKING:
    from benchmarks.report import Profile

PEER_SAVER, PEER_STORE = "AsyncPostgresSaver", "AsyncPostgresStore"
#: The parts, by key (what --only matches and --list shows): (label, compared with).
PARTS: dict[str, tuple[str, str]] = {
    "langgraph.graph": (f"{NODES}-node graph: invoke a new thread, resume it once", PEER_SAVER),
    "langgraph.get_tuple": ("aget_tuple latest (cache off, local, shared)", PEER_SAVER),
    "langgraph.bytes": ("bytes stored per checkpoint, one thread", PEER_SAVER),
    "langgraph.store": ("store aput / aget / asearch (filter, limit 10)", PEER_STORE),
}
GRAPH_TARGET = 1.0  # ratios: the peer's time / ours (above 1: ours is faster)
GET_TUPLE_TARGET = 1.5  # with the read cache
BYTES_TARGET = 0.8  # ours / the peer's bytes per checkpoint (below 1: ours is smaller)
STORE_TARGET = 1.0
STORE_OPERATIONS = ("put", "get", "search")


@dataclass(frozen=True)
class Timed:
    """One workload (or variant) of ours against the peer, measured in the same rounds."""

    key: str  # "langgraph.graph", "langgraph.get_tuple.local", "langgraph.store.put", ...
    label: str
    ops: int  # per side per round
    comparison: Comparison | None = None
    error: str | None = None


@dataclass
class LangGraphResult:
    rounds: int = 0
    timed: list[Timed] = field(default_factory=list)
    footprints: list[Footprint] = field(default_factory=list)
    turns: int = 0  # invokes of the thread whose bytes are measured
    items: int = 0  # items of the namespace searched
    error: str | None = None  # what failed outside the timed workloads (opening, bytes)
    seconds: float = 0.0

    def get(self, key: str) -> Timed | None:
        return next((t for t in self.timed if t.key == key), None)


def selected(patterns: list[str] | None) -> list[str]:
    """The parts whose key matches one of the glob ``patterns`` (all when none given)."""
    if not patterns:
        return list(PARTS)
    return [key for key in PARTS if any(fnmatch.fnmatch(key, p) for p in patterns)]


def listing() -> list[tuple[str, str, str]]:
    return [(key, label, baseline) for key, (label, baseline) in PARTS.items()]


def _error(exc: BaseException) -> str:
    traceback.print_exc(file=sys.stderr)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def run(env: BenchEnv, profile: Profile, parts: list[str]) -> LangGraphResult:
    print(f"langgraph: {', '.join(parts)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = LangGraphResult(rounds=min(profile.repeat, profile.lg_rounds))
    caches = CACHE_VARIANTS if "langgraph.get_tuple" in parts else ("off",)
    try:
        with open_sides(env, caches) as sides:
            _run_parts(sides, profile, parts, result)
    except Exception as exc:  # the peer is not installed, a side cannot open, ...
        result.error = _error(exc)
    result.seconds = time.monotonic() - started
    return result


def _run_parts(sides: Sides, profile: Profile, parts: list[str], result: LangGraphResult) -> None:
    n, warmup, rounds, ops = profile.ops, profile.warmup, result.rounds, profile.lg_graph_ops
    if "langgraph.bytes" in parts:  # first: the tables hold nothing else yet
        result.turns = profile.lg_turns
        try:
            result.footprints = langgraph_bytes.measure(sides, profile.lg_turns)
        except Exception as exc:
            result.error = _error(exc)
    timed = result.timed
    if "langgraph.graph" in parts:
        build, label = functools.partial(graph_ops, sides), PARTS["langgraph.graph"][0]
        timed.append(_timed(sides, "langgraph.graph", label, build, ops, 2, rounds))
    if "langgraph.get_tuple" in parts:
        for cache in CACHE_VARIANTS:
            key, label = f"langgraph.get_tuple.{cache}", f"aget_tuple latest, ours cache='{cache}'"
            build = functools.partial(get_tuple_ops, sides, cache)
            timed.append(_timed(sides, key, label, build, n, warmup, rounds))
    if "langgraph.store" in parts:
        result.items = profile.lg_items
        for operation in STORE_OPERATIONS:
            key, label = f"langgraph.store.{operation}", _STORE_LABELS[operation]
            build = functools.partial(store_ops, sides, operation, profile.lg_items)
            timed.append(_timed(sides, key, label, build, n, warmup, rounds))


_STORE_LABELS = {
    "put": "store aput, a new key (~200-byte value)",
    "get": "store aget, an existing key",
    "search": "store asearch, namespace + filter {'kind': 'a'}, limit 10",
}


def _timed(
    sides: Sides,
    key: str,
    label: str,
    build: Callable[[], tuple[AsyncOp, AsyncOp]],
    ops: int,
    warmup: int,
    rounds: int,
) -> Timed:
    print(f"  {key}: {ops} ops x {rounds} rounds per side", file=sys.stderr, flush=True)

    def timed(op: AsyncOp, count: int, offset: int) -> Sample:
        return sides.run(run_side_async(op, count, offset))

    try:
        ours, peer = build()
        comparison = compare(ours, peer, n=ops, repeat=rounds, warmup=warmup, run=timed)
    except Exception as exc:  # one broken workload must not hide the others
        return Timed(key, label, ops, error=_error(exc))
    return Timed(key, label, ops, comparison)


# -- the report ------------------------------------------------------------------------------


def _cpu(ours_us: float, peer_us: float) -> str:
    """Client CPU per op of both sides, in ms once either reaches one."""
    if max(ours_us, peer_us) >= 1000:
        return f"{ours_us / 1000:.2f} / {peer_us / 1000:.2f} ms"
    return f"{ours_us:,.0f} / {peer_us:,.0f} µs"


def _peer(key: str) -> str:
    return PEER_STORE if key.startswith("langgraph.store") else PEER_SAVER


def timed_lines(r: LangGraphResult) -> list[str]:
    lines = [
        "| workload | ops per side per round | ours ops/s | peer | peer ops/s "
        "| ratio (peer time / ours) | client CPU per op ours / peer |",
        "|---|--:|--:|---|--:|--:|--:|",
    ]
    for t in r.timed:
        c = t.comparison
        if c is None or c.baseline is None or c.ratio is None:
            lines.append(f"| {t.label} | {t.ops} | unavailable: {t.error} | | | | |")
            continue
        lines.append(
            f"| {t.label} | {t.ops} | {c.ours.ops_per_s:,.1f} | {_peer(t.key)} "
            f"| {c.baseline.ops_per_s:,.1f} | {c.ratio:.2f}x "
            f"| {_cpu(c.ours.cpu_us, c.baseline.cpu_us)} |"
        )
    return lines


def bytes_lines(r: LangGraphResult) -> list[str]:
    peer = next((f for f in r.footprints if f.label == PEER_SAVER), None)
    lines = [
        f"**Bytes per checkpoint.** One thread of {r.turns} invokes of the graph on each "
        "side (each invoke writes its input's checkpoint, the loop's first and one per "
        "node). *Rows*: `sum(pg_column_size(t.*))` of the thread's rows in each of the "
        "side's tables (values TOAST compressed stay compressed), over its checkpoints; "
        "*relations*: the growth of `pg_total_relation_size` (heap, TOAST, indexes) of "
        "those tables while the thread ran (whole pages, after a one-invoke thread on each "
        "side so that neither counts the first pages of empty tables), over the same "
        "count. Ours read as the owner role.",
        "",
        "| side | checkpoints | rows, bytes per checkpoint | by table | relations, bytes "
        "per checkpoint | rows vs peer |",
        "|---|--:|--:|---|--:|--:|",
    ]
    for f in r.footprints:
        tables = ", ".join(f"`{t}` {f.per_checkpoint(b):,.0f}" for t, b in f.table_bytes.items())
        vs = "-"
        if peer is not None and f is not peer and peer.row_bytes:
            vs = f"{_bytes_ratio(f, peer):.2f}x"
        lines.append(
            f"| {f.label} | {f.checkpoints} | {f.per_checkpoint(f.row_bytes):,.0f} | {tables} "
            f"| {f.per_checkpoint(f.relation_bytes):,.0f} | {vs} |"
        )
    return lines


def _bytes_ratio(ours: Footprint, peer: Footprint) -> float:
    return ours.per_checkpoint(ours.row_bytes) / peer.per_checkpoint(peer.row_bytes)


def lines(r: LangGraphResult) -> list[str]:
    """The section's Markdown (the parts that ran), its targets last."""
    from benchmarks.page_text import LANGGRAPH_INTRO

    out = [LANGGRAPH_INTRO.format(rounds=r.rounds, seconds=r.seconds)]
    if r.error:
        out += ["", f"Error: {r.error}"]
    if r.timed:
        out += ["", *timed_lines(r)]
    if r.footprints:
        out += ["", *bytes_lines(r)]
    found = verdicts(r)
    if found:
        out += ["", "Targets (ratio: the peer's time / ours; bytes: ours / the peer's):", ""]
        out += [f"- {v.target}: **{_status(v)}**, {v.figure}." for v in found]
    return out


def _status(v: Verdict) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[v.met]


# -- the targets -----------------------------------------------------------------------------


def verdicts(r: LangGraphResult) -> list[Verdict]:
    """One verdict per workload that ran (each store operation its own)."""
    found: list[Verdict] = []
    graph = r.get("langgraph.graph")
    if graph is not None:
        target = f"graph invoke + resume >= {GRAPH_TARGET}x {PEER_SAVER}"
        found.append(_ratio_verdict(graph, target, GRAPH_TARGET))
    if any(t.key.startswith("langgraph.get_tuple") for t in r.timed):
        found.append(_get_tuple_verdict(r))
    if r.footprints:
        found.append(_bytes_verdict(r.footprints))
    for operation in STORE_OPERATIONS:
        store = r.get(f"langgraph.store.{operation}")
        if store is not None:
            target = f"store a{operation} >= {STORE_TARGET}x {PEER_STORE}"
            found.append(_ratio_verdict(store, target, STORE_TARGET))
    return found


def _ratio_verdict(t: Timed, target: str, minimum: float) -> Verdict:
    c = t.comparison
    if c is None or c.baseline is None or c.ratio is None:
        return Verdict(t.key, target, None, f"not measured ({t.error})")
    figure = f"{c.ratio:.2f}x, client CPU {_cpu(c.ours.cpu_us, c.baseline.cpu_us)} per op"
    return Verdict(t.key, target, c.ratio >= minimum, figure)


def _get_tuple_verdict(r: LangGraphResult) -> Verdict:
    target = f"aget_tuple latest with the read cache >= {GET_TUPLE_TARGET}x {PEER_SAVER}"
    ratios = {}
    for cache in CACHE_VARIANTS:
        t = r.get(f"langgraph.get_tuple.{cache}")
        if t is not None and t.comparison is not None and t.comparison.ratio is not None:
            ratios[cache] = t.comparison.ratio
    cached = {cache: ratio for cache, ratio in ratios.items() if cache != "off"}
    if not cached:
        return Verdict("langgraph.get_tuple", target, None, "not measured")
    figure = ", ".join(f"cache='{cache}' {ratio:.2f}x" for cache, ratio in ratios.items())
    meeting = [cache for cache, ratio in cached.items() if ratio >= GET_TUPLE_TARGET]
    figure += f"; met by cache='{meeting[0]}'" if meeting else "; no cached variant meets it"
    return Verdict("langgraph.get_tuple", target, bool(meeting), figure)


def _bytes_verdict(footprints: list[Footprint]) -> Verdict:
    target = f"bytes per checkpoint (rows) <= {BYTES_TARGET}x {PEER_SAVER}'s"
    peer = next((f for f in footprints if f.label == PEER_SAVER), None)
    ours = [f for f in footprints if f is not peer and f.checkpoints]
    if peer is None or not peer.row_bytes or not ours:
        return Verdict("langgraph.bytes", target, None, "not measured")
    ratios = {f.label: _bytes_ratio(f, peer) for f in ours}
    figure = ", ".join(f"{label} {ratio:.2f}x" for label, ratio in ratios.items())
    figure += f" (peer {peer.per_checkpoint(peer.row_bytes):,.0f} bytes per checkpoint)"
    meeting = [label for label, ratio in ratios.items() if ratio <= BYTES_TARGET]
    figure += f"; met by {meeting[0]}" if meeting else "; neither meets it"
    return Verdict("langgraph.bytes", target, bool(meeting), figure)
