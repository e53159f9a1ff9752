"""Connection-level failures: each is a PersistenceError whose message names the fix,
and pooled connections killed under the pool are replaced before a caller sees one.

Servers are stopped and restarted only when the test started them (``private_server``);
on the shared server a test terminates only backends it opened itself.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from persistence import Database
from persistence.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    PoolExhaustedError,
)
from persistence.uow import UnitOfWork
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget, free_port
from tests.fixtures.throwaway import PrivateServer

UPGRADE = re.escape("run `persistence db upgrade` (or db.migrate())")
OWNER_URL = "owner_database_url / PERSISTENCE_OWNER_DATABASE_URL"
# No ping on checkout: a dead pooled connection is found by the unit of work's entry.
NO_PING: dict[str, Any] = {"pool_ping_after": 3600}


def _url(base: str, **parts: Any) -> str:
    return make_url(base).set(**parts).render_as_string(hide_password=False)


def _pid(uow: UnitOfWork) -> int:
    return int(uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _warm(db: Database, tenant: str, n: int) -> list[int]:
    """Open ``n`` units of work at once, so the pool holds ``n`` connections; their pids."""
    with ExitStack() as stack:
        return [_pid(stack.enter_context(db.unit_of_work(tenant))) for _ in range(n)]


def _terminate(server_url: str, role: str, database: str, pids: list[int]) -> None:
    """Terminate exactly these backends (of ``role`` on ``database``) and wait until gone."""
    query = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE usename = %s AND datname = %s AND pid = ANY(%s)"
    )
    with psycopg.connect(server_url, autocommit=True) as admin:
        terminated = admin.execute(query, (role, database, pids)).fetchall()
        assert len(terminated) == len(pids)
        for _ in range(100):
            left = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
            if admin.execute(left, (pids,)).fetchone() == (0,):
                return
            time.sleep(0.05)
    raise AssertionError(f"backends {pids} did not exit")


def _units_of_work_succeed(db: Database, tenant: str, n: int, dead: list[int]) -> None:
    """``n`` units of work in a row, then ``n`` at once: all succeed, none on a dead pid."""
    for k in range(n):
        with db.unit_of_work(tenant) as uow:
            uow.states.save("doc", {"k": k})
            assert _pid(uow) not in dead
    assert not set(_warm(db, tenant, n)) & set(dead)


# -- configuration errors: the message says what to fix ----------------------------------


@pytest.fixture
def empty_database(postgres_server: str, postgres: PostgresTarget) -> Iterator[str]:
    """A database without migrations, reached as the (runtime) role of the session."""
    name = f"ptest_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url(postgres.runtime_url, database=name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_missing_migrations_say_run_the_upgrade(
    empty_database: str, tmp_path: Path, open_database: Callable[..., Database]
) -> None:
    sqlite = f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}"
    for url in (empty_database, sqlite):
        with open_database(url) as db:
            with pytest.raises(ConfigurationError, match=UPGRADE), db.unit_of_work("acme"):
                pass
            with pytest.raises(ConfigurationError, match=UPGRADE), db.admin() as admin:
                admin.tenants.list()
            with pytest.raises(ConfigurationError, match=UPGRADE):
                db.store("acme", "s").get("k")


def test_a_server_that_is_down_is_unavailable(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    url = _url(postgres.runtime_url, port=free_port(), password="s3cret")  # nothing listens
    with open_database(url, lease_backend="sql") as db:
        calls = [
            lambda: db.unit_of_work("acme").__enter__(),
            lambda: db.admin().__enter__(),
            lambda: db.migrate(),
            lambda: db.store("acme", "s").get("k"),
            lambda: db.lease("acme", "l").__enter__(),
        ]
        for call in calls:
            with pytest.raises(DatabaseUnavailableError) as info:
                call()
            shown = str(info.value)
            assert isinstance(info.value, ConnectionError)
            assert "cannot connect to the database in database_url" in shown
            assert "server is running" in shown and "***@" in shown and "s3cret" not in shown


def test_an_unknown_role_names_the_url_to_fix(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    ghost = f"ghost_{uuid.uuid4().hex[:8]}"
    db = open_database(_url(postgres.runtime_url, username=ghost))
    with db, pytest.raises(ConfigurationError) as info, db.unit_of_work("acme"):
        pass
    assert f'role "{ghost}" does not exist' in str(info.value)
    assert "fix the user in database_url (PERSISTENCE_DATABASE_URL)" in str(info.value)
    assert "persistence db create-runtime-role" in str(info.value)
    owner = _url(postgres.owner_url, username=ghost)
    db = open_database(postgres.runtime_url, owner_url=owner)
    with db, pytest.raises(ConfigurationError, match="fix the user in owner_database_url"):
        db.migrate()


def test_an_unknown_database_names_the_url_to_fix(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    db = open_database(_url(postgres.runtime_url, database="ptest_nowhere"))
    with db, pytest.raises(ConfigurationError) as info, db.admin():
        pass
    assert 'database "ptest_nowhere" does not exist' in str(info.value)
    assert "fix the database name in database_url" in str(info.value)


def test_the_runtime_role_cannot_administer(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    """A database opened on the runtime URL alone administers with the runtime role too."""
    with open_database(postgres.runtime_url) as db:
        with pytest.raises(ConfigurationError) as info, db.admin() as admin:
            admin.tenants.list()  # (would be empty: row-level security hides them all)
        assert f"role {postgres.runtime_role!r} does not own" in str(info.value)
        assert OWNER_URL in str(info.value) and "tenants" in str(info.value)
        role = f"ptest_more_{uuid.uuid4().hex[:8]}"
        with pytest.raises(ConfigurationError) as info:
            db.grant_runtime_role(role)
        assert "permission denied" in str(info.value) and OWNER_URL in str(info.value)
        assert role not in str(info.value)  # the statement is not dumped


def test_an_exhausted_pool_names_its_settings(
    pg_db: Database, postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    tenant = new_tenant(pg_db)
    settings: dict[str, Any] = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2}
    with open_database(postgres.runtime_url, **settings) as db:
        with db.unit_of_work(tenant) as held:
            with pytest.raises(PoolExhaustedError) as info, db.unit_of_work(tenant):
                pass
            held.states.save("doc", {"still": "usable"})
        assert isinstance(info.value, TimeoutError)
        for setting in ("pool_size", "max_overflow", "pool_timeout"):
            assert setting in str(info.value)
        with db.unit_of_work(tenant) as uow:  # the connection went back to the pool
            assert uow.states.load("doc") is not None


# -- connections lost ------------------------------------------------------------------


def test_a_connection_lost_mid_unit_of_work_writes_nothing(
    pg_db: Database,
    postgres: PostgresTarget,
    postgres_server: str,
    open_database: Callable[..., Database],
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(postgres.runtime_url, pool_size=1, **NO_PING) as db:
        with pytest.raises(DatabaseUnavailableError) as info, db.unit_of_work(tenant) as uow:
            uow.states.save("first", {"n": 1})
            pid = _pid(uow)
            _terminate(postgres_server, postgres.runtime_role, postgres.database, [pid])
            uow.states.save("second", {"n": 2})
        assert "lost the connection" in str(info.value) and "rolls back" in str(info.value)
        with db.unit_of_work(tenant) as uow:  # a new connection; nothing of the first kept
            assert _pid(uow) != pid
            assert uow.states.load("first") is None and uow.states.load("second") is None


def test_terminated_pooled_connections_are_replaced_unseen(
    pg_db: Database,
    postgres: PostgresTarget,
    postgres_server: str,
    open_database: Callable[..., Database],
) -> None:
    tenant = new_tenant(pg_db)
    with open_database(
        postgres.runtime_url, owner_url=postgres.owner_url, pool_size=4, **NO_PING
    ) as db:
        dead = _warm(db, tenant, 4)
        with db.admin() as admin:
            admin.tenants.get(tenant)
        with db.owner_engine.connect() as conn:  # the one connection the owner's pool holds
            owner_pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        _terminate(postgres_server, postgres.runtime_role, postgres.database, dead)
        _terminate(postgres_server, postgres.owner_role, postgres.database, [owner_pid])
        _units_of_work_succeed(db, tenant, 4, dead)
        with db.admin() as admin:
            assert admin.tenants.get(tenant).slug == tenant


def test_a_restarted_server_is_invisible_to_the_next_units_of_work(
    private_server: PrivateServer,
    private_postgres: PostgresTarget,
    open_database: Callable[..., Database],
) -> None:
    target = private_postgres
    with open_database(
        target.runtime_url, owner_url=target.owner_url, pool_size=3, **NO_PING
    ) as db:
        tenant = new_tenant(db)
        dead = _warm(db, tenant, 3)
        private_server.restart()
        _units_of_work_succeed(db, tenant, 3, dead)
        with db.admin() as admin:  # its pooled connection died too
            assert admin.tenants.get(tenant).slug == tenant


def test_a_stopped_server_is_unavailable_until_it_is_back(
    private_server: PrivateServer,
    private_postgres: PostgresTarget,
    open_database: Callable[..., Database],
) -> None:
    target = private_postgres
    with open_database(target.runtime_url, owner_url=target.owner_url) as db:
        tenant = new_tenant(db)
        private_server.stop()
        try:
            for _ in range(2):  # nothing listens: each fails at once, none hangs
                with pytest.raises(DatabaseUnavailableError), db.unit_of_work(tenant):
                    pass
        finally:
            private_server.start()
        with db.unit_of_work(tenant) as uow:
            assert isinstance(uow.tenant.slug, str)
