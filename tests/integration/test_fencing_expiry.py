"""Issue 15, line 4: a fenced write by a holder whose lease has expired (or was released)
is refused, whether or not a new holder has written yet; the live holder's writes go
through, an ``extend`` counting. Every backend (SQL on SQLite and PostgreSQL, Redis),
both APIs, stores and states; then 1,000 acquisitions with random pauses."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from persistence import Database
from persistence.errors import LeaseLostError, StaleFenceError
from persistence.models.base import utcnow
from tests.integration.test_leases import (  # noqa: F401  (the fixtures)
    ldb,
    new_tenant,
    redis_pg_adb,
    redis_pg_db,
)

TTL = 0.25


def _writes(db: Database, tenant: str) -> dict[str, Callable[[object, str], None]]:
    """A fenced store write and a fenced state save, each ``write(lease, value)``."""
    store = db.store(tenant=tenant, name="shared")

    def to_store(lease: object, value: str) -> None:
        store.fenced(lease)["owner"] = value

    def to_state(lease: object, value: str) -> None:
        with db.unit_of_work(tenant) as uow:
            uow.states.save("job", {"owner": value}, fence=lease)

    return {"store": to_store, "state": to_state}


def _stored(db: Database, tenant: str) -> tuple[object, object]:
    with db.unit_of_work(tenant) as uow:
        loaded = uow.states.load("job")
    state = None if loaded is None else loaded.state["owner"]
    return db.store(tenant=tenant, name="shared").get("owner"), state


def _past(lease: object) -> None:
    """Sleep until ``lease`` has expired."""
    expires_at = lease.fence_token.expires_at  # type: ignore[attr-defined]
    assert expires_at is not None
    time.sleep(max(0.0, (expires_at - utcnow()).total_seconds()) + 0.05)


@pytest.mark.parametrize("kind", ["store", "state"])
def test_an_expired_holder_is_refused_before_the_new_holder_writes(
    ldb: Database,  # noqa: F811
    kind: str,
) -> None:
    tenant = new_tenant(ldb)
    write = _writes(ldb, tenant)[kind]
    a = ldb.lease(tenant=tenant, name="job", ttl=TTL)
    write(a, "A")  # live: accepted
    _past(a)
    b = ldb.lease(tenant=tenant, name="job", ttl=30, wait=5)  # takes over, writes nothing
    with pytest.raises(StaleFenceError, match="expired"):
        write(a, "A, stalled")
    write(b, "B")
    with pytest.raises(StaleFenceError):
        write(a, "A, stalled again")
    assert _stored(ldb, tenant)[kind == "state"] == "B"
    b.release()


@pytest.mark.parametrize("kind", ["store", "state"])
def test_an_expired_holder_is_refused_with_no_new_holder(
    ldb: Database,  # noqa: F811
    kind: str,
) -> None:
    tenant = new_tenant(ldb)
    write = _writes(ldb, tenant)[kind]
    a = ldb.lease(tenant=tenant, name="job", ttl=TTL)
    write(a, "A")
    _past(a)
    with pytest.raises(StaleFenceError):
        write(a, "A, stalled")  # nobody took the lease: still refused
    assert _stored(ldb, tenant)[kind == "state"] == "A"
    with pytest.raises(LeaseLostError):
        a.release()


def test_a_released_lease_writes_no_more_and_an_extended_one_does(
    ldb: Database,  # noqa: F811
) -> None:
    tenant = new_tenant(ldb)
    writes = _writes(ldb, tenant)
    a = ldb.lease(tenant=tenant, name="job", ttl=TTL)
    store = ldb.store(tenant=tenant, name="shared").fenced(a)  # the token read per write
    a.extend(30)
    _past_ttl = time.monotonic() + TTL + 0.05
    time.sleep(max(0.0, _past_ttl - time.monotonic()))  # past the first ttl, not the new
    store["owner"] = "A, extended"
    writes["state"](a, "A, extended")
    a.release()
    for write in writes.values():
        with pytest.raises(StaleFenceError):
            write(a, "A, released")
    assert _stored(ldb, tenant) == ("A, extended", "A, extended")


@pytest.mark.parametrize("backend", ["sql-pg", "redis-pg"])
def test_no_write_is_accepted_after_its_lease_expired(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """1,000 acquisitions in all (500 per backend) by one holder after another, each
    pausing for a random time (a third of them past the ttl) before its fenced write.
    Accepted writes all began before their lease's end as the holder counts it (which
    is never after the lock service's: the ttl is counted from before the request);
    refused ones all ended after it (the database's clock is this machine's)."""
    db = request.getfixturevalue({"sql-pg": "pg_db", "redis-pg": "redis_pg_db"}[backend])
    tenant = new_tenant(db)
    store = db.store(tenant=tenant, name="shared")
    rng = random.Random(15)
    accepted = refused = 0
    last_fence = 0
    for n in range(500):
        ttl = rng.uniform(0.01, 0.03)
        lease = db.lease(tenant=tenant, name="job", ttl=ttl, wait=5)
        assert lease.fence > last_fence
        last_fence = lease.fence
        ends = lease.fence_token.expires_at
        assert ends is not None
        time.sleep(rng.uniform(0, 1.5 * ttl))
        began = utcnow()
        try:
            store.fenced(lease)["owner"] = n
        except StaleFenceError:
            refused += 1
            assert utcnow() >= ends, f"acquisition {n}: refused while the lease was live"
        else:
            accepted += 1
            assert began < ends, f"acquisition {n}: accepted {began - ends} after the end"
        try:
            lease.release()
        except LeaseLostError:
            assert utcnow() >= ends
    assert accepted > 100 and refused > 100  # both outcomes were exercised
