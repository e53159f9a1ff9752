"""Retention of LangGraph checkpoints per tenant, applied by ``persistence gc``: keep
the last N checkpoints of each thread namespace (never the history a DeltaChannel is
rebuilt from), drop idle threads; in bounded batches, with a report; and prune()'s
keep_latest is as safe with delta channels."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph

from persistence import Database
from persistence.errors import InvalidInputError
from persistence.langgraph import PersistenceSaver, _checkpoints
from persistence.langgraph._retention import Retention, get_retention, set_retention
from tests.conftest import new_tenant
from tests.integration.test_cli import Cli, Result, invoke  # noqa: F401 (fixture)


@pytest.fixture
def db(sync_db: Database) -> Database:
    """Both backends; gc and the CLI are sync."""
    return sync_db


@pytest.fixture
def run(db: Database, invoke: Cli) -> Cli:  # noqa: F811
    urls = ["--database-url", db.settings.database_url]
    if db.settings.owner_database_url:
        urls += ["--owner-url", db.settings.owner_database_url]
    return lambda *args: invoke(*urls, "--json", *args)


class Count(TypedDict):
    n: int


def _counting(saver: PersistenceSaver) -> Any:
    builder = StateGraph(Count)
    builder.add_node("add", lambda s: {"n": s["n"] + 1})
    builder.add_edge(START, "add")
    builder.add_edge("add", END)
    return builder.compile(checkpointer=saver)


def _thread(graph: Any, turns: int) -> dict[str, Any]:
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    for _ in range(turns):
        graph.invoke({"n": 0} if graph.get_state(config).values == {} else None, config)
        graph.invoke({"n": graph.get_state(config).values["n"]}, config)
    return config


def _ids(saver: PersistenceSaver, config: dict[str, Any]) -> list[str]:
    return [t.checkpoint["id"] for t in saver.list(config)]


def test_policy_is_set_shown_and_cleared_by_the_cli(db: Database, run: Cli) -> None:
    tenant = new_tenant(db)
    assert run("langgraph", "retention", "show", "-t", tenant).json() == [
        {"tenant": tenant, "keep_last": None, "idle_days": None}
    ]
    done = run(
        "langgraph", "retention", "set", "-t", tenant, "--keep-last", "5", "--idle-days", "30"
    )
    assert done.json() == [{"tenant": tenant, "keep_last": 5, "idle_days": 30.0}]
    with db.unit_of_work(tenant) as uow:
        assert get_retention(uow.scope) == Retention(5, timedelta(days=30))
    assert run("langgraph", "retention", "set", "-t", tenant, "--keep-last", "0").code != 0
    run("langgraph", "retention", "clear", "-t", tenant)
    with db.unit_of_work(tenant) as uow:
        assert get_retention(uow.scope) == Retention()
        with pytest.raises(InvalidInputError):
            set_retention(uow.scope, keep_last=None, idle=timedelta(0))


def test_gc_keeps_the_last_n_and_reports_what_it_deleted(db: Database, run: Cli) -> None:
    tenant, bystander = new_tenant(db), new_tenant(db)
    saver, other = PersistenceSaver(db, tenant=tenant), PersistenceSaver(db, tenant=bystander)
    graph, their_graph = _counting(saver), _counting(other)
    configs = [_thread(graph, 3) for _ in range(3)]
    theirs = _thread(their_graph, 3)
    before = {c["configurable"]["thread_id"]: _ids(saver, c) for c in configs}
    states = {c["configurable"]["thread_id"]: graph.get_state(c).values for c in configs}
    assert all(len(ids) > 4 for ids in before.values())
    run("langgraph", "retention", "set", "-t", tenant, "--keep-last", "4")
    report = run("gc", "--tenant", tenant, "--batch-size", "2").json()
    step = next(r for r in report if r["step"] == "langgraph checkpoints (retention)")
    assert step["deleted"] == sum(len(ids) - 4 for ids in before.values())
    for config in configs:
        thread = config["configurable"]["thread_id"]
        assert _ids(saver, config) == before[thread][:4]  # the newest four, in order
        assert graph.get_state(config).values == states[thread]
        graph.invoke({"n": 100}, config)  # the thread goes on
    assert len(_ids(other, theirs)) > 4  # another tenant's policy is its own


def test_gc_drops_idle_threads(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from persistence.langgraph._retention import apply_retention

    tenant = new_tenant(db)
    saver = PersistenceSaver(db, tenant=tenant)
    graph = _counting(saver)
    old = datetime.now(UTC) - timedelta(days=40)
    monkeypatch.setattr(_checkpoints, "utcnow", lambda: old)
    stale = _thread(graph, 1)
    monkeypatch.undo()
    fresh = _thread(graph, 1)
    with db.unit_of_work(tenant) as uow:
        set_retention(uow.scope, keep_last=None, idle=timedelta(days=30))
        deleted = apply_retention(uow.scope, batch_size=1)
    assert deleted > 0
    assert _ids(saver, stale) == [] and _ids(saver, fresh) != []


def _concat(state: list[str], writes: list[list[str]]) -> list[str]:
    """A DeltaChannel reducer: a batch of writes at once."""
    return [*state, *(event for write in writes for event in write)]


class Log(TypedDict):
    events: Annotated[list[str], DeltaChannel(_concat, snapshot_frequency=4)]
    n: int


def _logging(saver: PersistenceSaver) -> Any:
    builder = StateGraph(Log)
    builder.add_node("log", lambda s: {"events": [f"e{s['n']}"], "n": s["n"] + 1})
    builder.add_edge(START, "log")
    builder.add_edge("log", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.parametrize("how", ["prune", "gc"])
def test_trimming_never_breaks_a_delta_channel(db: Database, how: str) -> None:
    tenant = new_tenant(db)
    saver = PersistenceSaver(db, tenant=tenant)
    graph = _logging(saver)
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    for n in range(7):  # 7 updates of a channel snapshotted every 4th: the last is a delta
        graph.invoke({"n": n}, config)
    expected = graph.get_state(config).values
    assert expected["events"] == [f"e{n}" for n in range(7)]
    total = len(_ids(saver, config))
    if how == "prune":
        saver.prune([config["configurable"]["thread_id"]], strategy="keep_latest")
    else:
        from persistence.langgraph._retention import apply_retention

        with db.unit_of_work(tenant) as uow:
            set_retention(uow.scope, keep_last=1, idle=None)
            apply_retention(uow.scope, batch_size=10)
    kept = len(_ids(saver, config))
    assert 1 < kept < total  # the chain back to the snapshot stays, the rest goes
    assert graph.get_state(config).values == expected
    graph.invoke({"n": 7}, config)
    assert graph.get_state(config).values["events"] == [f"e{n}" for n in range(8)]


def test_the_results_are_what_the_cli_reports(run: Cli) -> None:
    result: Result = run("langgraph", "retention", "show", "-t", "no-such-tenant")
    assert result.code != 0 and "no-such-tenant" in result.err
