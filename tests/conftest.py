"""Shared fixtures: databases on both backends, built by running the migrations."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from persistence import Database, Settings
from persistence.database_async import AsyncDatabase
from tests.fixtures.bridge import Loop, bridge

if TYPE_CHECKING:
    from tests.fixtures.services import PostgresTarget

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.pgbouncer",
    "tests.fixtures.throwaway",
    "tests.fixtures.redis_cluster",
    "tests.fixtures.cache",
    "tests.fixtures.langgraph",
]


@pytest.fixture(scope="session")
def pg_db(postgres: PostgresTarget) -> Iterator[Database]:
    """PostgreSQL: runtime queries as the runtime role, administration as the owner."""
    with Database.from_url(postgres.runtime_url, owner_url=postgres.owner_url) as db:
        yield db


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("sqlite") / "persistence.sqlite3"
    with Database.from_url(f"sqlite:///{path}") as db:
        db.migrate()
        yield db


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[Loop]:
    """The event loop every bridged async object of the session runs on."""
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def pg_adb(postgres: PostgresTarget, event_loop_thread: Loop) -> Iterator[Database]:
    """The asyncio API on PostgreSQL, driven through the sync API's shape (bridge)."""
    adb = AsyncDatabase.from_url(postgres.runtime_url, owner_url=postgres.owner_url)
    yield bridge(adb, event_loop_thread)
    event_loop_thread.run(adb.close())


@pytest.fixture(scope="session")
def sqlite_adb(
    tmp_path_factory: pytest.TempPathFactory, event_loop_thread: Loop
) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("sqlite-async") / "persistence.sqlite3"
    adb = AsyncDatabase.from_url(f"sqlite:///{path}")
    event_loop_thread.run(adb.migrate())
    yield bridge(adb, event_loop_thread)
    event_loop_thread.run(adb.close())


@pytest.fixture(params=["sqlite", "pg"])
def sync_db(request: pytest.FixtureRequest) -> Database:
    """Both backends, the sync API only: for tests of the schema, the engines or the
    driver (not of a behaviour both APIs share)."""
    return request.getfixturevalue(f"{request.param}_db")  # type: ignore[no-any-return]


def _database(request: pytest.FixtureRequest) -> Database:
    backend, _, api = request.param.partition("-")
    name = f"{backend}_adb" if api else f"{backend}_db"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "pg", "sqlite-async", "pg-async"])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test body on both backends and both APIs: the async variants run the
    asyncio API (``AsyncDatabase``) through ``tests.fixtures.bridge``."""
    return _database(request)


@pytest.fixture(params=["pg", "pg-async"])
def db_pg(request: pytest.FixtureRequest) -> Database:
    """``db`` on PostgreSQL only: both APIs (for row-level security, the pool, the wire)."""
    return _database(request)


@pytest.fixture(params=["sqlite", "sqlite-async"])
def db_sqlite(request: pytest.FixtureRequest) -> Database:
    """``db`` on SQLite only: both APIs."""
    return _database(request)


@pytest.fixture(params=["sync", "async"])
def open_database(request: pytest.FixtureRequest) -> Callable[..., Database]:
    """``open_database(url, **settings)``: a ``Database.from_url``, or (async) an
    ``AsyncDatabase.from_url`` through the bridge; both are context managers.
    ``open_database(Settings(...))`` builds from the settings object instead."""
    if request.param == "sync":
        return lambda url, **settings: _open(Database, url, **settings)
    loop: Loop = request.getfixturevalue("event_loop_thread")

    def open_async(url: str | Settings, **settings: object) -> Database:
        return bridge(_open(AsyncDatabase, url, **settings), loop)  # type: ignore[no-any-return]

    return open_async


def _open(cls: Any, url: str | Settings, **settings: Any) -> Any:
    return cls(url) if isinstance(url, Settings) else cls.from_url(url, **settings)


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_tenant(db: Database) -> str:
    """Create a tenant with a fresh slug on ``db`` (for tests bound to one backend)."""
    slug = unique_slug()
    with db.admin() as admin:
        admin.tenants.create(slug)
    return slug


@pytest.fixture
def make_tenant(db: Database) -> Callable[..., str]:
    """Create a tenant with a fresh slug (plus the given workspaces); return its slug."""

    def make(*workspaces: str) -> str:
        slug = unique_slug()
        with db.admin() as admin:
            admin.tenants.create(slug, name=f"Tenant {slug}")
            for workspace in workspaces:
                admin.workspaces.create(slug, workspace)
        return slug

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., str]) -> str:
    """A fresh tenant with ``default`` and ``research`` workspaces."""
    return make_tenant("research")
