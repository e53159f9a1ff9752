"""The latest checkpoint of a thread through the read cache (docs/cache.md), both APIs
on PostgreSQL: served from the cache once read, never older than what this process
wrote (a put, a task's writes), a commit elsewhere seen within the bound, a corrupted
entry never served, and a unit of work that wrote reads the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from langgraph.checkpoint.base import empty_checkpoint

from persistence import Database
from persistence.langgraph import AsyncPersistenceSaver, PersistenceSaver
from tests.conftest import new_tenant
from tests.fixtures.bridge import is_async, unbridged
from tests.fixtures.cache import eventually
from tests.fixtures.langgraph import AsyncAsSync

Opener = Callable[..., Database]


def _saver(db: Database, tenant: str, **options: Any) -> Any:
    if is_async(db):
        saver = AsyncPersistenceSaver(unbridged(db), tenant=tenant, **options)
        return AsyncAsSync(saver, object.__getattribute__(db, "_loop"))
    return PersistenceSaver(db, tenant=tenant, **options)


def _served(db: Database) -> int:
    stats = unbridged(db).cache.stats()
    return int(stats.served_local + stats.served_shared)


def _put(saver: Any, thread: str, value: str, parent: dict[str, Any] | None) -> dict[str, Any]:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"v": value, "big": [value] * 50}
    checkpoint["channel_versions"] = {"v": value, "big": value}
    config = parent or {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    result: dict[str, Any] = saver.put(config, checkpoint, {"step": 1}, {"v": value, "big": value})
    return result


def _latest(saver: Any, thread: str) -> Any:
    return saver.get_tuple({"configurable": {"thread_id": thread}})


def test_latest_is_served_from_the_cache_and_never_older_than_a_write(
    pg_db: Database, cached: Opener
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    saver = _saver(db, tenant)
    first = _put(saver, "t", "a", None)
    assert _latest(saver, "t").checkpoint["channel_values"]["big"] == ["a"] * 50  # filled
    before, fills = _served(db), unbridged(db).cache.stats().local.fills
    for _ in range(3):
        assert _latest(saver, "t").checkpoint["id"] == first["configurable"]["checkpoint_id"]
    assert _served(db) == before + 3  # hits, each one decoded as it was stored
    assert unbridged(db).cache.stats().local.fills == fills  # none read again
    saver.put_writes(first, [("v", "pending")], "task-1")
    assert [w[2] for w in _latest(saver, "t").pending_writes] == ["pending"]  # not the old entry
    second = _put(saver, "t", "b", first)
    found = _latest(saver, "t")
    assert found.checkpoint["id"] == second["configurable"]["checkpoint_id"]
    assert found.checkpoint["channel_values"]["v"] == "b" and found.pending_writes == []


def test_a_put_elsewhere_is_seen_within_the_bound(pg_db: Database, cached: Opener) -> None:
    tenant = new_tenant(pg_db)
    writer, reader = cached(), cached()
    ours, theirs = _saver(writer, tenant), _saver(reader, tenant)
    parent = _put(ours, "t", "v0", None)
    assert _latest(theirs, "t").checkpoint["channel_values"]["v"] == "v0"  # cached there
    for n in range(1, 4):
        parent = _put(ours, "t", f"v{n}", parent)
        want = f"v{n}"
        assert eventually(
            lambda want=want: _latest(theirs, "t").checkpoint["channel_values"]["v"] == want,
            within=2.0,
        )


def test_a_corrupted_entry_is_never_served(
    pg_db: Database, cached: Opener, redis_url: str, prefix: str
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    saver = _saver(db, tenant)
    _put(saver, "t", "good", None)
    assert _latest(saver, "t") is not None  # filled: in-process and in Redis
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*:cache:lg:*"))
    assert keys
    for key in keys:
        raw = client.get(key)
        assert raw is not None and b"good" in raw
        client.set(key, raw.replace(b"good", b"evil"))
    unbridged(db).cache.local.clear()
    found = _latest(saver, "t")  # the checksum refuses Redis's bytes: read again
    assert found.checkpoint["channel_values"]["v"] == "good"


def test_an_altered_in_process_entry_fails_its_checksum_and_is_read_again(
    pg_db: Database, open_database: Opener, postgres: Any
) -> None:
    import dataclasses

    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, cache="local") as db:
        saver = _saver(db, tenant)
        _put(saver, "t", "good", None)
        assert _latest(saver, "t") is not None  # filled in-process
        local = unbridged(db).cache.local
        (key,) = [k for k in local._entries if "|lg:" in k]
        entry = local._entries[key]
        assert b"good" in entry.value
        local._entries[key] = dataclasses.replace(
            entry, value=entry.value.replace(b"good", b"evil")
        )
        assert _latest(saver, "t").checkpoint["channel_values"]["v"] == "good"
        assert all(b"evil" not in e.value for e in local._entries.values())
