"""The latest checkpoint of a thread, read from the database (no read cache): on
PostgreSQL one statement, one round trip that carries the unit of work's COMMIT too,
sync and async; on every backend what a read of that checkpoint by its id returns
(channel values of blobs of every version type, pending writes in LangGraph's order,
the parent config)."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from persistence import Database
from persistence.langgraph import AsyncPersistenceSaver, PersistenceSaver
from tests.conftest import new_tenant
from tests.fixtures.bridge import is_async, unbridged
from tests.fixtures.langgraph import AsyncAsSync
from tests.fixtures.statements import wire

THREAD = "latest-thread"
BIG = ["a large value, stored as a blob"] * 40
#: A float's text in the checkpoint's JSON is not Python's for every float (0.00001
#: against 1e-05): the channel rows hold Python's.
VERSIONS: dict[str, Any] = {"ints": 7, "strs": "00000000000000000002.0.5", "floats": 1e-05}


def _saver(db: Database) -> Any:
    """The sync saver on a Database, the async one on an AsyncDatabase (sync names)."""
    tenant = new_tenant(db)
    if is_async(db):
        saver = AsyncPersistenceSaver(unbridged(db), tenant=tenant)
        return AsyncAsSync(saver, object.__getattribute__(db, "_loop"))
    return PersistenceSaver(db, tenant=tenant)


def _put(saver: Any, parent: Any, values: dict[str, Any], versions: dict[str, Any]) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions
    config = parent or {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
    return saver.put(config, checkpoint, {"step": len(values)}, versions)


def _thread(saver: Any) -> tuple[Any, list[tuple[str, str, Any]]]:
    """A thread of two checkpoints, the latest with blobs and pending writes of two
    tasks (one value a blob); its config and the writes in the order LangGraph applies
    them (by task path, then task id, then index: not the order they were put in)."""
    first = _put(saver, None, {"ints": ["first", *BIG]}, {"ints": 6})
    values = {c: [c, *BIG] for c in VERSIONS} | {"inline": "small"}
    latest = _put(saver, first, values, VERSIONS | {"inline": 3})
    saver.put_writes(latest, [("ints", "b0"), ("strs", BIG)], "task-b", "~path-2")
    saver.put_writes(latest, [("floats", 1.5), ("inline", "a1")], "task-a", "~path-1")
    expected = [
        ("task-a", "floats", 1.5),
        ("task-a", "inline", "a1"),
        ("task-b", "ints", "b0"),
        ("task-b", "strs", BIG),
    ]
    return latest, expected


def test_the_latest_is_one_round_trip_with_its_commit(db_pg: Database) -> None:
    saver = _saver(db_pg)
    latest, writes = _thread(saver)
    config = {"configurable": {"thread_id": THREAD}}
    by_id = saver.get_tuple(latest)  # (a fresh read, by id: three statements)
    assert saver.get_tuple(config) is not None  # the scope known, the statement prepared
    with wire(db_pg) as messages:
        found = saver.get_tuple(config)
    sent = [kind for direction, kind, _ in messages if direction == "F"]
    assert sent.count("Sync") == 1 and "Query" not in sent  # (no COMMIT of its own after)
    assert sent.count("Bind") == 4  # BEGIN, the tenant entry, the read, COMMIT
    assert found.config == by_id.config == latest
    assert found.checkpoint == by_id.checkpoint
    assert found.checkpoint["channel_values"] == {c: [c, *BIG] for c in VERSIONS} | {
        "inline": "small"
    }
    assert found.pending_writes == by_id.pending_writes == writes
    assert found.parent_config == by_id.parent_config
    assert (
        found.parent_config["configurable"]["checkpoint_id"]
        != latest["configurable"]["checkpoint_id"]
    )
    assert found.metadata == by_id.metadata


@pytest.mark.parametrize("version", [1e-05, 2.5e-07, 0.125, 1e20, -3.0, 12, "v-1"], ids=repr)
def test_the_latest_equals_a_read_by_id(db: Database, version: Any) -> None:
    saver = _saver(db)
    values = {"doc": BIG, "other": ["other", *BIG]}
    stored = _put(saver, None, values, {"doc": version, "other": 2})
    saver.put_writes(stored, [("doc", BIG)], "task-1")
    found = saver.get_tuple({"configurable": {"thread_id": THREAD}})
    by_id = saver.get_tuple(stored)
    assert found.checkpoint == by_id.checkpoint
    assert found.checkpoint["channel_values"] == values
    assert found.pending_writes == by_id.pending_writes == [("task-1", "doc", BIG)]
    assert found.parent_config is None and found.config == stored
