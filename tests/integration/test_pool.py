"""The pool pings only connections that sat idle, and replaces dead ones before use."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import count_pings


def _backend_pid(db: Database, tenant: str) -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_busy_connection_is_not_pinged(
    postgres: PostgresTarget,
    pg_db: Database,
    open_database: Callable[..., Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, pool_ping_after=60) as db:
        pings = count_pings(db, monkeypatch)
        pid = _backend_pid(db, tenant)
        for _ in range(5):
            assert _backend_pid(db, tenant) == pid  # the same pooled connection
        assert pings == []  # no round trip spent on checking a connection just used


def test_idle_connection_is_pinged(
    postgres: PostgresTarget,
    pg_db: Database,
    open_database: Callable[..., Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, pool_ping_after=0) as db:
        pings = count_pings(db, monkeypatch)
        for _ in range(3):
            _backend_pid(db, tenant)
        assert len(pings) == 2  # every checkout but the first (a fresh connection)


def test_idle_dead_connection_is_replaced_before_use(
    postgres: PostgresTarget, pg_db: Database, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, pool_ping_after=0.2) as db:
        pid = _backend_pid(db, tenant)
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.3)  # idle past pool_ping_after: the next checkout pings
        new_pid = _backend_pid(db, tenant)  # works: the dead connection was replaced
        assert new_pid != pid


def test_after_a_dead_connection_the_others_are_pinged_and_kept(
    postgres: PostgresTarget,
    pg_db: Database,
    open_database: Callable[..., Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One backend terminated: no error, the dead connection is replaced and the live
    ones, pinged once, are kept (not reconnected, as invalidating the pool would)."""
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=3, pool_ping_after=3600) as db:
        before = _pids_at_once(db, tenant, 3)
        pings = count_pings(db, monkeypatch)
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (before[1],))
        after = _pids_at_once(db, tenant, 3)
        assert before[1] not in after and len(set(after) & set(before)) == 2
        # Each unit of work found its connection's fate at its first statement (the dead
        # one's ran again on a new connection): a live one is never pinged twice.
        assert len(pings) <= 2
        doubted = _pids_at_once(db, tenant, 3)  # checked in after the death: no ping
        assert set(doubted) == set(after) and len(pings) <= 2


def _pids_at_once(db: Database, tenant: str, n: int) -> list[int]:
    """The backend pids of ``n`` units of work open at once (``n`` pooled connections)."""
    with ExitStack() as stack:
        uows = [stack.enter_context(db.unit_of_work(tenant)) for _ in range(n)]
        return [int(u.session.execute(text("SELECT pg_backend_pid()")).scalar_one()) for u in uows]
