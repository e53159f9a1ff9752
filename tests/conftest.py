"""Shared fixtures: databases on both backends, built by running the migrations."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from persistence import Database

if TYPE_CHECKING:
    from tests.fixtures.services import PostgresTarget

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.throwaway"]


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


@pytest.fixture(params=["sqlite", "pg"])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test on both backends."""
    return request.getfixturevalue(f"{request.param}_db")  # type: ignore[no-any-return]


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
