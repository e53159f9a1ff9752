"""The targets of issue 12 (the asyncio API), judged on one run's figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks.targets import MIN_RATIO, Verdict, cpu_figure, measured

if TYPE_CHECKING:
    from benchmarks.report import Result

#: Each operation of AsyncDatabase against raw psycopg AsyncConnection: at least this
#: throughput ratio (ours / baseline). Client CPU per operation is reported beside it.
ASYNC_MIN_RATIO = MIN_RATIO
#: 64 tasks on 8 connections against psycopg_pool: at least this throughput ratio.
CONCURRENT_MIN_RATIO = MIN_RATIO

#: The asyncio cases judged: key -> what the target calls it.
ASYNC_OPERATIONS: dict[str, str] = {
    "async.state.save": "state save",
    "async.state.load": "state load latest",
    "async.state.load_version": "state load by version",
    "async.store.get": "store get",
    "async.store.set": "store set",
    "async.workflow.get": "workflow get",
    "async.artifact.save_1 KiB": "artifact save 1 KiB",
    "async.artifact.load_1 KiB": "artifact load 1 KiB",
    "async.uow.empty": "empty unit of work",
}
CONCURRENT: dict[str, str] = {
    "async.concurrent.state": "state load + save",
    "async.concurrent.store": "store get + set",
}

_MET = (
    "The unit of work runs on psycopg's `AsyncConnection` the way the sync one runs on "
    "`Connection` (the same executor, generated from the same source): the first "
    "statement with `BEGIN` and the tenant entry in one libpq pipeline, prepared, "
    "`COMMIT` as a simple-protocol query, the "
    "connection kept warm from the last unit of work (no pool checkout or checkin), the "
    "end of the transaction shielded without a task of its own."
)
_MISSED = (
    "Same round trips and the same server work as the baseline; the gap is the client's "
    "CPU (the CPU figure) for what the baseline does not do (validating the input as "
    "exact JSON, building the records), and a write's server time, which varies from "
    "round to round on a shared machine; {profile} shows which functions take it."
)
_CONCURRENT_MET = (
    "Tasks queue for the 8 connections in SQLAlchemy's async pool as they do in "
    "psycopg_pool's; each unit of work costs what it costs sequentially."
)
_CONCURRENT_MISSED = (
    "64 tasks share the machine's 2 cores with the server, so the client is CPU bound "
    "and the throughput ratio follows the client CPU ratio (the CPU figure): with more "
    "tasks than connections most units of work check a connection out of SQLAlchemy's "
    "pool and back (a greenlet each) rather than find one warm; a store get + set is "
    "two units of work, so it pays that twice; where it goes: {profile}."
)


def _profile(key: str) -> str:
    return f"`python -m benchmarks.profile {key if ' ' not in key else repr(key)}`"


def _operation(result: Result, key: str, label: str) -> Verdict:
    target = f"async {label} >= {ASYNC_MIN_RATIO}x raw psycopg AsyncConnection"
    c, why = measured(result, key)
    if c is None or c.ratio is None or c.baseline is None:
        return Verdict(key, target, None, why)
    figure = cpu_figure(c.ratio, c.ours.cpu_us, c.baseline.cpu_us)
    met = c.ratio >= ASYNC_MIN_RATIO
    return Verdict(key, target, met, figure, () if met else ("ratio",))


def _concurrent(result: Result, key: str, label: str) -> Verdict:
    target = (
        f"64 tasks on 8 connections, {label} >= {CONCURRENT_MIN_RATIO}x raw psycopg on psycopg_pool"
    )
    mix = result.concurrency.mix(key) if result.concurrency is not None else None
    if mix is None or mix.ours is None or mix.raw is None or mix.ratio is None:
        why = mix.error if mix is not None and mix.error else "not run"
        return Verdict(key, target, None, f"not measured ({why})")
    figure = cpu_figure(mix.ratio, mix.ours.cpu_us, mix.raw.cpu_us)
    met = mix.ratio >= CONCURRENT_MIN_RATIO
    return Verdict(key, target, met, figure, () if met else ("ratio",))


def evaluate(result: Result) -> list[Verdict]:
    verdicts = [_operation(result, key, label) for key, label in ASYNC_OPERATIONS.items()]
    return verdicts + [_concurrent(result, key, label) for key, label in CONCURRENT.items()]


def _note(v: Verdict, said: set[str]) -> str:
    """The note of a verdict: in full the first time, then a pointer to the profile."""
    if v.key in CONCURRENT:
        text = _CONCURRENT_MET if v.met else _CONCURRENT_MISSED
        return text.format(profile=_profile(v.key))
    kind = "met" if v.met else "missed"
    if kind in said:
        return f"As above; {_profile(v.key)}." if not v.met else ""
    said.add(kind)
    return (_MET if v.met else _MISSED).format(profile=_profile(v.key))


def targets_lines(result: Result) -> list[str]:
    """The asyncio verdicts as Markdown list items."""
    verdicts = evaluate(result)
    lines: list[str] = []
    said: set[str] = set()
    for v in verdicts:
        status = {True: "met", False: "MISSED", None: "not measured"}[v.met]
        note = "" if v.met is None else _note(v, said)
        lines.append(f"- {v.target}: **{status}**, {v.figure}." + (f" {note}" if note else ""))
    return lines
