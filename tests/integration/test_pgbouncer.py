"""Tenant isolation through PgBouncer in transaction pooling mode.

The runtime URL goes through the private PgBouncer of ``tests.fixtures.pgbouncer``
(two server connections per role, shared by every client), with
``prepared_statements=False`` and ``startup_options=False``; administration (the owner
URL) connects directly. The row-level security checks of ``test_rls`` run again here,
on both APIs, with their ``db`` and raw ``runtime`` connection going through PgBouncer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from persistence import Database
from persistence.database_async import AsyncDatabase
from tests.fixtures.bridge import Loop, bridge
from tests.fixtures.pgbouncer import PgBouncerTarget
from tests.fixtures.services import PostgresTarget
from tests.integration import test_rls

# The checks of test_rls, collected again in this module: its fixtures below (``db``,
# ``runtime``) take the place of test_rls's own.
from tests.integration.test_rls import (  # noqa: F401
    probe,
    test_a_unit_of_work_cannot_write_rows_of_another_tenant,
    test_no_tenant_setting_sees_zero_rows,
    test_refusals_of_the_runtime_role_are_told_apart,
    test_runtime_role_is_neither_owner_nor_superuser,
    test_runtime_role_sees_only_the_tenant_set,
    test_writing_a_row_for_another_tenant_is_refused,
)

#: What a client of a transaction pooler sets: no server-side prepared statements, no
#: startup options (PgBouncer refuses them).
POOLED: dict[str, Any] = {"prepared_statements": False, "startup_options": False}


@pytest.fixture(scope="module")
def bounced_db(pgbouncer: PgBouncerTarget, postgres: PostgresTarget) -> Iterator[Database]:
    with Database.from_url(pgbouncer.runtime_url, owner_url=postgres.owner_url, **POOLED) as db:
        yield db


@pytest.fixture(scope="module")
def bounced_adb(
    pgbouncer: PgBouncerTarget, postgres: PostgresTarget, event_loop_thread: Loop
) -> Iterator[Database]:
    adb = AsyncDatabase.from_url(pgbouncer.runtime_url, owner_url=postgres.owner_url, **POOLED)
    yield bridge(adb, event_loop_thread)
    event_loop_thread.run(adb.close())


@pytest.fixture(params=["sync", "async"])
def db(request: pytest.FixtureRequest) -> Database:
    """The library through PgBouncer, on both APIs (``make_tenant`` uses this ``db``)."""
    return request.getfixturevalue(f"bounced_{'a' if request.param == 'async' else ''}db")  # type: ignore[no-any-return]


@pytest.fixture
def runtime(pgbouncer: PgBouncerTarget) -> Iterator[psycopg.Connection[Any]]:
    """A raw connection of the runtime role through PgBouncer."""
    with psycopg.connect(pgbouncer.psycopg_url("runtime")) as conn:
        yield conn


assert test_rls.SETTING  # (the module's checks run here as they are)
