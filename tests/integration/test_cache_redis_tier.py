"""The read cache's Redis tier on a real Redis, sync and async (one test body): hits and
misses, no stale fill, tombstones after a write, tenant epochs, one slot per tenant,
and failing open with a breaker when Redis is gone."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from persistence._cache_redis import RedisTier
from persistence._cache_redis_async import AsyncRedisTier
from persistence.cache import Entry
from tests.fixtures.bridge import Bridged, Loop
from tests.fixtures.services import free_port


@pytest.fixture(params=["sync", "async"])
def make_tier(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Callable[..., Any]]:
    """``make_tier(url=redis_url, **options)``: a tier on its own key prefix (the async
    one through the bridge, on the session's event loop)."""
    closers: list[Callable[[], Any]] = []

    def make(url: str = redis_url, **options: Any) -> Any:
        prefix = f"ptest-cache-{uuid.uuid4().hex[:8]}"
        timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        if request.param == "sync":
            client = redis.Redis.from_url(url, **timeouts)
            tier = RedisTier(client, prefix, **options)
            closers.extend((tier.close, client.close))  # (the tier's own connections too)
            return tier
        loop: Loop = request.getfixturevalue("event_loop_thread")
        aclient = redis.asyncio.Redis.from_url(url, **timeouts)
        bridged = Bridged(AsyncRedisTier(aclient, prefix, **options), loop)
        closers.extend((bridged.close, lambda: loop.run(aclient.aclose())))
        return bridged

    yield make
    for close in closers:
        close()


def test_a_miss_then_a_fill_then_a_hit(make_tier: Callable[..., Any]) -> None:
    tier, tenant = make_tier(), uuid.uuid4()
    missed = tier.get(tenant, "state:plan")
    assert missed.entry is None and missed.epoch == 0
    assert tier.put(tenant, "state:plan", Entry(3, b"payload", b"meta"), epoch=missed.epoch)
    hit = tier.get(tenant, "state:plan")
    assert hit.entry == Entry(3, b"payload", b"meta")
    s = tier.stats()
    assert (s.hits, s.misses, s.fills, s.errors) == (1, 1, 1, 0)


def test_a_fill_never_replaces_a_newer_or_equal_version(make_tier: Callable[..., Any]) -> None:
    tier, tenant = make_tier(), uuid.uuid4()
    tier.put(tenant, "k", Entry(5, b"five"), epoch=0)
    assert not tier.put(tenant, "k", Entry(4, b"four"), epoch=0)  # a slow reader
    assert not tier.put(tenant, "k", Entry(5, b"other"), epoch=0)
    assert tier.get(tenant, "k").entry == Entry(5, b"five")
    assert tier.put(tenant, "k", Entry(6, b"six"), epoch=0)
    assert tier.stats().refused_fills == 2


def test_after_a_write_a_fill_of_the_replaced_version_is_refused(
    make_tier: Callable[..., Any],
) -> None:
    tier, tenant = make_tier(), uuid.uuid4()
    tier.put(tenant, "k", Entry(5, b"five"), epoch=0)
    assert tier.invalidate(tenant, "k", floor=6)  # the writer committed version 6
    assert tier.get(tenant, "k").entry is None
    assert not tier.put(tenant, "k", Entry(5, b"five"), epoch=0)  # read before the write
    assert not tier.invalidate(tenant, "k", floor=4)  # a late invalidation lowers nothing
    assert not tier.put(tenant, "k", Entry(5, b"five"), epoch=0)
    assert tier.put(tenant, "k", Entry(6, b"six"), epoch=0)  # read after it: kept
    assert tier.get(tenant, "k").entry == Entry(6, b"six")
    assert not tier.invalidate(tenant, "k", floor=6)  # the entry is that version already


def test_an_epoch_bump_makes_every_entry_of_the_tenant_unservable(
    make_tier: Callable[..., Any],
) -> None:
    tier, tenant, other = make_tier(), uuid.uuid4(), uuid.uuid4()
    for t in (tenant, other):
        tier.put(t, "a", Entry(1, b"a"), epoch=0)
        tier.put(t, "b", Entry(1, b"b"), epoch=0)
    assert tier.bump_epoch(tenant)
    after = tier.get(tenant, "a")
    assert after.entry is None and after.epoch == 1
    assert tier.get(tenant, "b").entry is None
    assert tier.get(other, "a").entry == Entry(1, b"a")  # other tenants keep theirs
    assert not tier.put(tenant, "a", Entry(2, b"a2"), epoch=0)  # read before the bump
    assert tier.put(tenant, "a", Entry(1, b"a"), epoch=1)


def test_equal_keys_of_two_tenants_are_apart_and_a_tenants_keys_share_a_slot(
    make_tier: Callable[..., Any],
) -> None:
    tier, a, b = make_tier(), uuid.uuid4(), uuid.uuid4()
    tier.put(a, "k", Entry(1, b"of a"), epoch=0)
    assert tier.get(b, "k").entry is None
    keys = tier._keys(a, "state:x") + tier._keys(a, "store:y:z")
    assert len({key_slot(key.encode()) for key in keys}) == 1


def test_a_dead_redis_is_a_miss_and_the_breaker_skips_it(
    make_tier: Callable[..., Any],
) -> None:
    tier, tenant = make_tier(f"redis://127.0.0.1:{free_port()}/0", breaker_s=60), uuid.uuid4()
    fetched = tier.get(tenant, "k")
    assert fetched.entry is None and fetched.epoch is None  # nothing may be filled
    assert not tier.put(tenant, "k", Entry(1, b"x"), epoch=0)
    assert not tier.invalidate(tenant, "k", floor=1)
    assert not tier.bump_epoch(tenant)
    s = tier.stats()
    assert s.errors == 1 and s.skipped == 3  # one failed call, then no round trip at all


def test_the_breaker_closes_again_after_its_time(make_tier: Callable[..., Any]) -> None:
    tier, tenant = make_tier(breaker_s=0.0), uuid.uuid4()
    tier._open_until = 0.0
    assert tier.put(tenant, "k", Entry(1, b"x"), epoch=0)
    assert tier.get(tenant, "k").entry == Entry(1, b"x")


def test_a_restarted_redis_that_lost_the_scripts_still_takes_fills_and_writes(
    make_tier: Callable[..., Any], private_redis: Any
) -> None:
    """The tier runs its scripts by SHA on connections of its own: a server that no longer
    knows them (restarted, or SCRIPT FLUSH) answers NOSCRIPT, and the tier loads them."""
    tier, tenant = make_tier(private_redis.url), uuid.uuid4()
    assert tier.put(tenant, "state:a", Entry(1, b"one", None), epoch=0)
    private_redis.kill()
    private_redis.start()  # an empty server: no keys, no scripts
    tier = make_tier(private_redis.url)  # (the first one's breaker saw nothing: no call failed)
    assert tier.get(tenant, "state:a").entry is None
    assert tier.put(tenant, "state:a", Entry(2, b"two", None), epoch=0)
    redis.Redis.from_url(private_redis.url).script_flush()
    assert tier.write(tenant, "state:a", Entry(3, b"three", None), floor=3, publish=("c", b"m"))
    assert tier.get(tenant, "state:a").entry == Entry(3, b"three", None)
    assert tier.stats().errors == 0


def test_idle_connections_the_server_closed_are_replaced_not_failed(
    make_tier: Callable[..., Any], private_redis: Any
) -> None:
    """A server's idle timeout, a proxy's idle cut or CLIENT KILL close the tier's idle
    connections: its next commands open new ones, with no error and no open breaker
    (a commit's write that failed would leave other processes serving the old entry)."""
    tier, tenant = make_tier(private_redis.url), uuid.uuid4()
    assert tier.get(tenant, "state:a").entry is None  # (its connection, idle now)
    admin = redis.Redis.from_url(private_redis.url)
    try:
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        admin.close()
    assert tier.write(tenant, "state:a", Entry(1, b"one", None), floor=1, publish=("c", b"m"))
    assert tier.get(tenant, "state:a").entry == Entry(1, b"one", None)
    assert tier.stats().errors == 0


def test_a_floor_key_bounds_the_versions_served_and_filled(make_tier: Callable[..., Any]) -> None:
    """A state's versions by number: the floor key's tombstone (raised when versions go)
    hides the entries below it and refuses their fills, in one MGET and one script."""
    tier, tenant = make_tier(), uuid.uuid4()
    assert tier.put(tenant, "statev:w:2:doc", Entry(2, b"two", None), epoch=0, floor="statef:w:doc")
    assert tier.put(
        tenant, "statev:w:4:doc", Entry(4, b"four", None), epoch=0, floor="statef:w:doc"
    )
    note = ("c", b"m")
    assert tier.write(tenant, "statef:w:doc", None, floor=3, publish=note)
    assert tier.get(tenant, "statev:w:2:doc", floor="statef:w:doc").entry is None
    assert tier.get(tenant, "statev:w:2:doc").entry == Entry(2, b"two", None)  # (no floor asked)
    assert tier.get(tenant, "statev:w:4:doc", floor="statef:w:doc").entry == Entry(4, b"four", None)
    assert not tier.put(
        tenant, "statev:w:1:doc", Entry(1, b"one", None), epoch=0, floor="statef:w:doc"
    )
    assert tier.put(
        tenant, "statev:w:3:doc", Entry(3, b"three", None), epoch=0, floor="statef:w:doc"
    )
