"""A pooled connection starts every unit of work clean: session state one unit of work
leaves is reset at checkin, and a unit of work that left none costs no extra statement."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database
from persistence._session_reset import RESET
from persistence.rls import SCOPE_SETTING
from tests.fixtures.bridge import driver_connection
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import wire

TIMEOUT_MS = 4321  # not the server's default: RESET ALL must keep the startup options


@pytest.fixture
def db(pg_db: Database) -> Database:
    """PostgreSQL only (``make_tenant`` creates tenants through it)."""
    return pg_db


@pytest.fixture
def db_of_one(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> Iterator[Database]:
    """A pool of exactly one connection: every unit of work reuses it (either API)."""
    with open_database(
        postgres.runtime_url,
        owner_url=postgres.owner_url,
        pool_size=1,
        max_overflow=0,
        statement_timeout_ms=TIMEOUT_MS,
    ) as db:
        yield db


def _tenant_id(db: Database, slug: str) -> uuid.UUID:
    with db.admin() as admin:
        return admin.tenants.get(slug).id


def _pid(db: Database, tenant: str) -> int:
    with db.unit_of_work(tenant) as uow:
        return int(uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _leave_session_state(db: Database, tenant: str, other: str) -> None:
    """Through ``uow.session``: every kind of session state a caller's SQL can leave."""
    with db.unit_of_work(tenant) as uow:
        for statement in (
            "SET statement_timeout = 1234",
            f"SELECT set_config('{SCOPE_SETTING}', '{token(db, other)}', false)",
            "SET search_path = pg_catalog",
            "CREATE TEMP TABLE left_behind (x int)",
            "SELECT pg_advisory_lock(4242)",
            "LISTEN left_behind",
            "PREPARE left_behind AS SELECT 1",
            "DECLARE left_behind CURSOR WITH HOLD FOR SELECT 1",
        ):
            uow.session.execute(text(statement))


@pytest.fixture
def temporary_tables(postgres: PostgresTarget) -> Iterator[None]:
    """The runtime role may create temporary tables while the test runs (the grant takes
    that from it: a DBA may give it back, and the reset must still drop them)."""
    grant = f'GRANT TEMPORARY ON DATABASE "{postgres.database}" TO "{postgres.runtime_role}"'
    with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as conn:
        conn.execute(grant)
    try:
        yield
    finally:
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as conn:
            conn.execute(grant.replace("GRANT", "REVOKE").replace(" TO ", " FROM "))


def test_session_state_never_reaches_the_next_unit_of_work(
    db_of_one: Database, make_tenant: Callable[..., str], temporary_tables: None
) -> None:
    a, b, c = make_tenant(), make_tenant(), make_tenant()
    db = db_of_one
    for slug in (a, b, c):
        with db.unit_of_work(slug) as uow:
            uow.states.save("plan", {"owner": slug})
    pid = _pid(db, a)
    _leave_session_state(db, a, b)

    with db.unit_of_work(c) as uow:  # another tenant, on the same connection
        session = uow.session
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
        assert session.execute(text("SHOW statement_timeout")).scalar_one() == f"{TIMEOUT_MS}ms"
        # the session default, pinned by the entry to the tables' schema for the transaction
        assert session.execute(text("SHOW search_path")).scalar_one() == "public, pg_temp"
        leftovers = session.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "  AND pid = pg_backend_pid()), "
                "(SELECT count(*) FROM pg_listening_channels()), "
                "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql), "
                "(SELECT count(*) FROM pg_cursors), to_regclass('pg_temp.left_behind')"
            )
        ).one()
        assert tuple(leftovers) == (0, 0, 0, 0, None)
        owners = session.execute(text("SELECT tenant_id FROM state_heads")).scalars().all()
        assert owners == [_tenant_id(db, c)]  # its own tenant only
        uow.states.save("plan", {"owner": c, "step": 2})
        loaded = uow.states.load("plan")
        assert loaded is not None and loaded.state == {"owner": c, "step": 2}

    with db.engine.connect() as conn:  # raw SQL on the same pooled connection
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
        assert conn.execute(text("SELECT count(*) FROM state_heads")).scalar_one() == 0
        setting = conn.execute(text(f"SELECT current_setting('{SCOPE_SETTING}', true)"))
        assert setting.scalar() in ("", None)


Messages = list[tuple[str, str, str]]


def _sent(messages: Messages) -> list[tuple[str, str]]:
    """The messages the client sent: ``(type, text)``."""
    return [(kind, body) for direction, kind, body in messages if direction == "F"]


def _reset_count(messages: Messages) -> int:
    return sum(1 for kind, body in _sent(messages) if kind == "Query" and "RESET ALL" in body)


def test_a_unit_of_work_that_left_nothing_sends_no_reset(
    db_of_one: Database, make_tenant: Callable[..., str]
) -> None:
    tenant, db = make_tenant(), db_of_one
    with db.unit_of_work(tenant) as uow:  # connect and prepare outside the count
        uow.states.save("doc", {"n": 0})
        uow.store("s")["k"] = 0
    with wire(db) as clean:
        for n in range(1, 4):  # the hot paths: save, load, set, get
            with db.unit_of_work(tenant) as uow:
                uow.states.save("doc", {"n": n})
                assert uow.states.load("doc") is not None
                uow.store("s")["k"] = n
                assert uow.store("s")["k"] == n
    assert _reset_count(clean) == 0
    statements = [kind for kind, _ in _sent(clean) if kind in ("Query", "Execute")]
    # BEGIN and the entry (with the save), 4 statements, COMMIT: nothing added
    assert len(statements) == 3 * 7

    with wire(db) as empty, db.unit_of_work(tenant):
        pass
    with wire(db) as touched, db.unit_of_work(tenant) as uow:
        assert uow.session is not None  # handed out, nothing run: reset all the same
    assert _reset_count(empty) == 0
    sent_touched, sent_empty = _sent(touched), _sent(empty)
    assert [kind for kind, _ in sent_touched] == [kind for kind, _ in sent_empty] + ["Query"]
    assert _reset_count(touched) == 1 and sent_touched[-1][1].strip().strip('"') == RESET


def test_administration_sends_no_reset(
    postgres: PostgresTarget,
    make_tenant: Callable[..., str],
    open_database: Callable[..., Database],
) -> None:
    tenant = make_tenant()
    with open_database(postgres.owner_url, pool_size=1) as owner_db:  # admin on one URL
        with owner_db.admin() as admin:
            admin.tenants.get(tenant)
        with wire(owner_db) as sent, owner_db.admin() as admin:
            admin.tenants.get(tenant)
    assert sent and _reset_count(sent) == 0  # traced, and no reset among it


def test_a_raw_connection_is_reset_and_a_dead_one_is_replaced(
    postgres: PostgresTarget, db_of_one: Database, make_tenant: Callable[..., str]
) -> None:
    tenant, db = make_tenant(), db_of_one
    with db.engine.connect() as conn:  # plain SQLAlchemy use may leave anything
        conn.execute(text("SET search_path = pg_catalog"))
        conn.commit()
    with db.unit_of_work(tenant) as uow:
        assert uow.states.load("nothing") is None  # unqualified names resolve again
    with db.engine.connect() as conn:
        pid = driver_connection(conn).info.backend_pid
        with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The reset at checkin failed on the dead connection: it was dropped, not pooled.
    assert _pid(db, tenant) != pid
