"""State loads by version number through the read cache (docs/cache.md), on PostgreSQL
with Redis, through both APIs: served from either tier while the version exists, never
once it is gone (deleted, pruned, its state deleted) in this process or another, never
a version that can expire, never inside a unit of work that wrote the state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from persistence import Database
from tests.conftest import new_tenant
from tests.fixtures.bridge import unbridged
from tests.fixtures.cache import eventually
from tests.integration.test_cache_contract import _delay_fills

Opener = Callable[..., Database]


def _load(db: Database, tenant: str, version: int, sid: str = "doc") -> Any:
    with db.unit_of_work(tenant) as uow:
        found = uow.states.load(sid, version=version)
        return None if found is None else found.state


def _save(db: Database, tenant: str, value: Any, sid: str = "doc", **options: Any) -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.states.save(sid, value, **options).version)


def _served(db: Database) -> tuple[int, int]:
    stats = unbridged(db).cache.stats()
    return stats.served_local, stats.served_shared


def test_a_version_is_served_from_the_cache_after_one_read(pg_db: Database, cached: Opener) -> None:
    tenant, db, other = new_tenant(pg_db), cached(), cached()
    for n in range(1, 4):
        _save(db, tenant, {"n": n})
    assert _load(db, tenant, 2) == {"n": 2}  # read, then kept
    before = _served(db)
    assert _load(db, tenant, 2) == {"n": 2}
    assert _served(db)[0] == before[0] + 1  # from the in-process tier
    assert _load(other, tenant, 2) == {"n": 2}  # another process: from Redis
    assert _served(other)[1] == 1
    assert _load(db, tenant, 9) is None  # an absent version is a miss every time


def test_a_deleted_version_is_never_served_here_or_elsewhere(
    pg_db: Database, cached: Opener
) -> None:
    tenant, writer, reader = new_tenant(pg_db), cached(), cached()
    for n in range(1, 4):
        _save(writer, tenant, {"n": n})
    for db in (writer, reader):
        assert _load(db, tenant, 1) == {"n": 1} and _load(db, tenant, 1) == {"n": 1}
    with writer.unit_of_work(tenant) as uow:
        uow.states.delete_version("doc", 1)
    assert _load(writer, tenant, 1) is None  # at once in the writer
    assert eventually(lambda: _load(reader, tenant, 1) is None, within=2.0)
    assert _load(cached(), tenant, 1) is None  # and not from Redis
    assert _load(reader, tenant, 2) == {"n": 2}


def test_pruned_versions_are_never_served(pg_db: Database, cached: Opener) -> None:
    tenant, writer, reader = new_tenant(pg_db), cached(), cached()
    for n in range(1, 4):
        _save(writer, tenant, {"n": n})
    for db in (writer, reader):
        assert [_load(db, tenant, v) for v in (1, 2, 3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    _save(writer, tenant, {"n": 4}, max_versions=2)  # versions 1 and 2 go
    assert [_load(writer, tenant, v) for v in (1, 2, 3)] == [None, None, {"n": 3}]
    assert eventually(lambda: _load(reader, tenant, 2) is None, within=2.0)
    assert _load(reader, tenant, 1) is None and _load(reader, tenant, 3) == {"n": 3}
    assert _load(cached(), tenant, 1) is None


def test_a_deleted_state_serves_no_version(pg_db: Database, cached: Opener) -> None:
    tenant, writer, reader = new_tenant(pg_db), cached(), cached()
    _save(writer, tenant, {"n": 1})
    _save(writer, tenant, {"n": 2})
    for db in (writer, reader):
        assert _load(db, tenant, 1) == {"n": 1} and _load(db, tenant, 2) == {"n": 2}
    with writer.unit_of_work(tenant) as uow:
        uow.states.delete("doc")
    assert _load(writer, tenant, 1) is None and _load(writer, tenant, 2) is None
    assert eventually(lambda: _load(reader, tenant, 2) is None, within=2.0)
    assert _save(writer, tenant, {"n": 3}) == 3  # the counter goes on
    assert _load(reader, tenant, 1) is None and _load(cached(), tenant, 2) is None
    assert eventually(lambda: _load(reader, tenant, 3) == {"n": 3}, within=2.0)


def test_versions_that_can_expire_are_never_cached(pg_db: Database, cached: Opener) -> None:
    """A version with an expiry may go with its state (purged, the numbers starting
    again): it is read from the database every time, and a save with a TTL puts every
    earlier version out of the cache too."""
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    assert _load(db, tenant, 1) == {"n": 1} and _load(db, tenant, 1) == {"n": 1}
    cached_before = _served(db)
    _save(db, tenant, {"n": 2}, ttl=3600)
    assert _load(db, tenant, 1) == {"n": 1}  # still there, read from the database
    assert _load(db, tenant, 2) == {"n": 2} and _load(db, tenant, 2) == {"n": 2}
    assert _served(db) == cached_before


def test_a_unit_of_work_that_wrote_the_state_reads_versions_from_the_database(
    pg_db: Database, cached: Opener
) -> None:
    tenant, db = new_tenant(pg_db), cached()
    _save(db, tenant, {"n": 1})
    _save(db, tenant, {"n": 2})
    assert _load(db, tenant, 1) == {"n": 1}  # cached
    with db.unit_of_work(tenant) as uow:
        uow.states.delete_version("doc", 1)
        assert uow.states.load("doc", version=1) is None  # its own uncommitted delete
    with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:  # rolled back
        uow.states.delete_version("doc", 2)
        assert uow.states.load("doc", version=2) is None
        raise RuntimeError
    assert _load(db, tenant, 2) == {"n": 2} and _load(db, tenant, 1) is None


def test_a_slow_fill_of_a_version_deleted_meanwhile_is_refused(
    pg_db: Database, cached: Opener
) -> None:
    """A reader read version 1 from the database; a writer deleted it and committed
    before the reader's fill: the fill is refused in both tiers (the version's
    tombstone), so no process serves it afterwards."""
    tenant, writer, reader = new_tenant(pg_db), cached(), cached()
    _save(writer, tenant, {"n": 1})
    _save(writer, tenant, {"n": 2})
    reached, release = _delay_fills(reader)
    done: list[Any] = []
    slow = threading.Thread(target=lambda: done.append(_load(reader, tenant, 1)))
    slow.start()
    assert reached.wait(10)  # read from the database, not filled yet
    received = unbridged(reader).cache.stats().invalidations_received
    with writer.unit_of_work(tenant) as uow:
        uow.states.delete_version("doc", 1)
    assert eventually(lambda: unbridged(reader).cache.stats().invalidations_received > received)
    release.set()
    slow.join(10)
    assert done == [{"n": 1}]  # what it read (it began before the delete)
    assert _load(reader, tenant, 1) is None and _load(cached(), tenant, 1) is None


def test_no_version_outlives_its_state_through_an_expiry_and_a_purge(
    pg_db: Database, cached: Opener
) -> None:
    """A state saved with a TTL may expire and be purged with every version, its numbers
    starting again at 1: none of its versions is filled while it can expire, even once
    the floor the TTL save raised has left Redis (cache_ttl), so the state created again
    under the same id never shows the old version 1."""
    ttl = 1.0
    tenant, writer = new_tenant(pg_db), cached(cache_ttl=ttl)
    _save(writer, tenant, {"n": 1})
    _save(writer, tenant, {"n": 2}, ttl=2)
    time.sleep(ttl + 0.2)  # the floor's tombstone has expired in Redis
    reader = cached(cache_ttl=ttl)
    assert _load(reader, tenant, 1) == {"n": 1} and _load(reader, tenant, 1) == {"n": 1}
    assert _served(reader) == (0, 0)  # read from the database each time: never filled
    time.sleep(2.0)  # the state has expired
    with pg_db.unit_of_work(tenant) as uow:
        assert uow.states.purge_expired() == 2
    assert _save(pg_db, tenant, {"new": 1}) == 1
    assert _load(cached(cache_ttl=ttl), tenant, 1) == {"new": 1}


@pytest.mark.parametrize("removal", ["prune", "delete elsewhere"])
def test_a_floor_mark_dropped_from_the_bounded_marks_never_lets_a_gone_version_back(
    pg_db: Database, cached: Opener, removal: str
) -> None:
    """The in-process floor marks are bounded (an LRU): once any mark was dropped, an
    in-process version entry is checked against the floor in Redis again."""
    tenant, db, other = new_tenant(pg_db), cached(), cached()
    for n in range(1, 4):
        _save(db, tenant, {"n": n})
    assert _load(db, tenant, 1) == {"n": 1}  # kept in-process
    if removal == "prune":
        _save(db, tenant, {"n": 4}, max_versions=2)  # versions 1 and 2 go
    else:
        with other.unit_of_work(tenant) as uow:
            uow.states.delete("doc")
    assert eventually(lambda: _load(db, tenant, 1) is None, within=2.0)
    unbridged(db).cache._marks._limit = 3  # (as if 65,536 other keys had been read)
    for i in range(5):
        _save(db, tenant, {"x": i}, sid=f"other{i}")
    assert _load(db, tenant, 1) is None
