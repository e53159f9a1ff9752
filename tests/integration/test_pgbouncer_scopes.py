"""The scope tests through PgBouncer in transaction pooling mode: the attacks
(test_scope_attacks), read-only scopes (test_read_only_scopes) and access descriptors
(test_access_capability) run again here, collected from their modules, with the
library's runtime URL and the raw runtime connections going through the private
PgBouncer of ``tests.fixtures.pgbouncer`` (clients share its two server connections),
administration direct. An executor opening a descriptor sets the same pooler settings
from its environment (``PERSISTENCE_TRANSACTION_POOLER``, ``..._PREPARED_STATEMENTS``)."""

from __future__ import annotations

import pytest

from persistence import Database
from tests.integration.test_access_capability import (  # noqa: F401
    test_a_descriptor_database_issues_nothing_and_opens_nothing_else,
    test_a_descriptor_with_any_field_edited_is_refused,
    test_a_read_only_descriptor_writes_nothing,
    test_an_expired_descriptor_is_refused,
)
from tests.integration.test_pgbouncer import (  # noqa: F401 - fixtures: db, runtime
    bounced_adb,
    bounced_db,
    db,
    runtime,
)
from tests.integration.test_read_only_scopes import (  # noqa: F401
    seeded,
    test_a_read_only_token_refuses_raw_writes_on_a_plain_connection,
    test_a_read_only_unit_of_work_is_refused_writes_after_leaving_its_transaction,
)
from tests.integration.test_scope_attacks import (  # noqa: F401
    test_attacks_inside_a_unit_of_work_reach_no_other_scope,
    test_attacks_on_a_plain_runtime_connection_reach_nothing,
    test_the_counting_query_finds_other_scopes_rows,
    world,
)


@pytest.fixture(autouse=True)
def _pooler_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process behind the pooler (an executor opening a descriptor) sets."""
    monkeypatch.setenv("PERSISTENCE_TRANSACTION_POOLER", "true")
    monkeypatch.setenv("PERSISTENCE_PREPARED_STATEMENTS", "false")


@pytest.fixture(scope="module")
def pg_db(bounced_db: Database) -> Database:  # noqa: F811
    """The library through PgBouncer (the scope tests' ``pg_db``)."""
    return bounced_db
