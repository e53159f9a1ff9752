"""``idle_in_transaction_timeout_ms``: a transaction stalled by its client is cut off, so
a stalled ``store.transaction(lock=True)`` holder cannot block the next locker for ever."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from persistence import Database
from persistence.errors import PersistenceError, StatementTimeoutError
from tests.fixtures.services import PostgresTarget

IDLE_MS = 500


@pytest.fixture
def db(pg_db: Database) -> Database:
    """PostgreSQL only (``make_tenant`` creates tenants through it)."""
    return pg_db


def _pid(db: Database, tenant: str) -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_the_idle_bound_is_a_startup_option(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    db = open_database(postgres.runtime_url, idle_in_transaction_timeout_ms=1234)
    with db, db.engine.connect() as conn:
        shown = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
    assert shown == "1234ms"


def test_a_stalled_lock_holder_is_cut_off_and_the_next_locker_proceeds(
    postgres: PostgresTarget,
    pg_db: Database,
    make_tenant: Callable[..., str],
    open_database: Callable[..., Database],
) -> None:
    tenant, stall = make_tenant(), 5 * IDLE_MS / 1000
    holder_db = open_database(
        postgres.runtime_url,
        idle_in_transaction_timeout_ms=IDLE_MS,
        pool_size=1,
        max_overflow=0,
    )
    holding, failures = threading.Event(), []
    held_pid = _pid(holder_db, tenant)

    def stalled_holder() -> None:
        store = holder_db.store(tenant, "jobs")
        try:
            with store.transaction(lock=True):
                store["owner"] = "stalled"
                holding.set()
                time.sleep(stall)  # a client stuck while it holds the lock
        except Exception as exc:
            failures.append(exc)

    with holder_db:
        thread = threading.Thread(target=stalled_holder)
        thread.start()
        assert holding.wait(10)
        started = time.monotonic()
        store = pg_db.store(tenant, "jobs")  # another process's pool, the default bound
        with store.transaction(lock=True):  # waits only until the server cuts the holder
            store["owner"] = "next"
        waited = time.monotonic() - started
        thread.join(30)
        assert waited < stall - IDLE_MS / 1000, waited  # did not wait for the holder
        assert len(failures) == 1, failures
        assert isinstance(failures[0], StatementTimeoutError)  # a PersistenceError
        assert isinstance(failures[0], PersistenceError) and "idle" in str(failures[0])
        assert store["owner"] == "next"  # the holder's write was rolled back
        # The only pooled connection was killed: the next unit of work gets a new one.
        assert _pid(holder_db, tenant) != held_pid
        assert holder_db.store(tenant, "jobs")["owner"] == "next"
