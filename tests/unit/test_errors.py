"""The error tree and the translation of driver errors (real SQLite errors, and real
psycopg exception objects for the PostgreSQL-only SQLSTATEs; no mocks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.pool import QueuePool

from persistence import errors
from persistence.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    InvalidInputError,
    LockNotAcquiredError,
    PersistenceError,
    PoolExhaustedError,
    ReadOnlyError,
    StatementTimeoutError,
    TenantIsolationError,
    VersionConflictError,
    translate,
    translate_errors,
)


def test_every_error_derives_from_persistence_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, PersistenceError), name
    assert issubclass(errors.NotFoundError, LookupError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.InvalidTypeError, TypeError)
    assert issubclass(errors.StaleFenceError, ConflictError)
    assert not issubclass(errors.TenantIsolationError, ConfigurationError)


def test_version_conflict_carries_both_numbers() -> None:
    exc = VersionConflictError("expected 3, latest is 4", expected=3, actual=4)
    assert (exc.expected, exc.actual) == (3, 4)
    assert isinstance(exc, ConflictError)


@pytest.fixture
def conn() -> Iterator[object]:
    engine = create_engine("sqlite://")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.execute(text("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
        connection.execute(
            text(
                "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER NOT NULL REFERENCES p(id), "
                "n INTEGER CHECK (n > 0))"
            )
        )
        connection.execute(text("INSERT INTO p VALUES (1)"))
        yield connection
    engine.dispose()


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("INSERT INTO p VALUES (1)", AlreadyExistsError),
        ("INSERT INTO c VALUES (1, 99, 1)", ConflictError),
        ("INSERT INTO c VALUES (1, 1, -1)", InvalidInputError),
        ("INSERT INTO c VALUES (1, NULL, 1)", InvalidInputError),
    ],
)
def test_driver_errors_are_translated_with_the_cause_kept(
    conn: object, statement: str, expected: type[PersistenceError]
) -> None:
    with pytest.raises(expected) as info, translate_errors():
        conn.execute(text(statement))  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, DBAPIError)
    assert isinstance(info.value.__cause__.orig, sqlite3.Error)


def test_unmapped_errors_become_database_errors_with_the_cause_kept(conn: object) -> None:
    with pytest.raises(DatabaseError) as info, translate_errors():
        conn.execute(text("SELECT * FROM missing_table"))  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, DBAPIError)
    assert "missing_table" in str(info.value) and "SELECT" not in str(info.value)


def test_other_sqlalchemy_errors_become_database_errors(conn: object) -> None:
    conn.close()  # type: ignore[attr-defined]
    with pytest.raises(DatabaseError) as info, translate_errors():
        conn.execute(text("SELECT 1"))  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, SQLAlchemyError)
    assert "closed" in str(info.value) and "sqlalche.me" not in str(info.value)


def test_an_exhausted_pool_is_a_pool_exhausted_error(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'pool.db'}",
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.01,
    )
    try:
        with engine.connect(), pytest.raises(PoolExhaustedError) as info, translate_errors():
            engine.connect()
    finally:
        engine.dispose()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, PersistenceError)
    assert isinstance(info.value.__cause__, SQLAlchemyTimeoutError)
    for setting in ("pool_size", "max_overflow", "pool_timeout"):
        assert setting in str(info.value)


def _postgres_error(cls: type[psycopg.Error], message: str) -> DBAPIError:
    """What SQLAlchemy raises for a psycopg error (its SQLSTATE comes from ``cls``)."""
    return DBAPIError.instance("INSERT ...", {}, cls(message), psycopg.Error)


URL = "database_url (PERSISTENCE_DATABASE_URL) 'postgresql+psycopg://app:***@db:5432/prod'"
REFUSED = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
UPGRADE = "run `persistence db upgrade` (or db.migrate())"
OWNER = "use the owner URL (owner_database_url / PERSISTENCE_OWNER_DATABASE_URL)"
GRANT = "`persistence db create-runtime-role NAME`"
RETRY = "retry the unit of work once the database is reachable"


# psycopg's OperationalError on connecting carries no SQLSTATE (libpq reports a refused
# login as text only): those rows give the class psycopg.OperationalError.
@pytest.mark.parametrize(
    "cls, message, expected, fixes",
    [
        (pg_errors.AdminShutdown, "terminating connection due to administrator command",
         DatabaseUnavailableError, [RETRY]),  # 57P01: pg_terminate_backend, a restart
        (pg_errors.CrashShutdown, "terminating connection because of crash of another "
         "server process", DatabaseUnavailableError, [RETRY]),  # 57P02
        (pg_errors.CannotConnectNow, "the database system is starting up",
         DatabaseUnavailableError, ["retry shortly"]),  # 57P03
        (pg_errors.ConnectionFailure, "could not send data to server",
         DatabaseUnavailableError, [RETRY]),  # 08006, and the rest of class 08
        (pg_errors.ProtocolViolation, "unexpected message", DatabaseUnavailableError, [RETRY]),
        (psycopg.OperationalError, "consuming input failed: server closed the connection "
         "unexpectedly", DatabaseUnavailableError, [RETRY]),
        (psycopg.OperationalError, REFUSED + "Connection refused", DatabaseUnavailableError,
         ["cannot connect to the database in " + URL, "server is running"]),
        (pg_errors.ConnectionTimeout, "connection timeout expired", DatabaseUnavailableError,
         ["cannot connect to the database in " + URL]),
        (psycopg.OperationalError, REFUSED + "FATAL:  the database system is shutting down",
         DatabaseUnavailableError, ["retry shortly"]),
        (pg_errors.TooManyConnections, "sorry, too many clients already",
         DatabaseUnavailableError, ["pool_size", "max_connections"]),  # 53300
        (psycopg.OperationalError, REFUSED + 'FATAL:  role "ghost" does not exist',
         ConfigurationError, ['role "ghost" does not exist', "fix the user in " + URL, GRANT]),
        (pg_errors.InvalidAuthorizationSpecification, 'role "ghost" is not permitted to log '
         "in", ConfigurationError, ["fix the user in " + URL]),  # 28000
        (psycopg.OperationalError, REFUSED + 'FATAL:  password authentication failed for user '
         '"app"', ConfigurationError, ["fix the password in " + URL]),
        (pg_errors.InvalidPassword, 'password authentication failed for user "app"',
         ConfigurationError, ["fix the password in " + URL]),  # 28P01
        (psycopg.OperationalError, REFUSED + 'FATAL:  database "prod" does not exist',
         ConfigurationError, ['database "prod" does not exist', "fix the database name in "
         + URL]),
        (pg_errors.InvalidCatalogName, 'database "prod" does not exist', ConfigurationError,
         ["fix the database name in " + URL]),  # 3D000
        (pg_errors.UndefinedFunction, "function persistence_enter(unknown, unknown) does not "
         "exist", ConfigurationError, [UPGRADE]),  # 42883
        (pg_errors.UndefinedTable, 'relation "tenants" does not exist', ConfigurationError,
         [UPGRADE]),  # 42P01, a table of ours
        (pg_errors.UndefinedTable, 'relation "public.state_versions" does not exist',
         ConfigurationError, [UPGRADE]),
        (pg_errors.InsufficientPrivilege, "permission denied for table tenants",
         ConfigurationError, ["permission denied for table tenants", OWNER, GRANT]),  # 42501
        (pg_errors.UndefinedTable, 'relation "their_table" does not exist', DatabaseError,
         ["database error (42P01)", "their_table"]),  # not ours: no advice to migrate
        (pg_errors.UndefinedFunction, "function their_fn() does not exist", DatabaseError,
         ["their_fn"]),
        (pg_errors.SyntaxError, 'syntax error at or near "SELEC"\nLINE 1: SELEC 1',
         DatabaseError, ["database error (42601)"]),
        (pg_errors.DivisionByZero, "division by zero", InvalidInputError,
         ["division by zero"]),  # class 22: a value the database refused
        (pg_errors.FeatureNotSupported, "not supported", DatabaseError, ["(0A000)"]),
    ],
)  # fmt: skip
def test_sqlstate_table(
    cls: type[psycopg.Error],
    message: str,
    expected: type[PersistenceError],
    fixes: list[str],
) -> None:
    error = DBAPIError.instance(
        "SELECT secret_statement(%(p)s)", {"p": "secret-param"}, cls(message), psycopg.Error
    )
    mapped = translate(error, url=URL)
    assert type(mapped) is expected, str(mapped)
    shown = str(mapped)
    for fix in fixes:
        assert fix in shown
    assert "secret" not in shown and "LINE 1" not in shown  # never the statement
    with pytest.raises(expected) as info, translate_errors(URL):
        raise error
    assert info.value.__cause__ is error


def test_unavailable_and_unmapped_errors_keep_what_callers_catch() -> None:
    lost = translate(_postgres_error(pg_errors.AdminShutdown, "terminating connection"))
    assert isinstance(lost, ConnectionError) and isinstance(lost, PersistenceError)
    unmapped = translate(_postgres_error(pg_errors.FeatureNotSupported, "not supported"))
    assert isinstance(unmapped, DatabaseError) and unmapped.sqlstate == "0A000"
    # SQLAlchemy saw a disconnect it could not name: the connection is gone all the same.
    invalidated = DBAPIError.instance(
        "SELECT 1", {}, psycopg.InterfaceError("?"), psycopg.Error, connection_invalidated=True
    )
    assert isinstance(translate(invalidated), DatabaseUnavailableError)
    # Without a URL the message still says which one to fix.
    refused = REFUSED + 'FATAL:  role "x" does not exist'
    role = translate(_postgres_error(psycopg.OperationalError, refused))
    assert "fix the user in the database URL" in str(role)


@pytest.mark.parametrize(
    "message, table",
    [
        ('new row violates row-level security policy for table "state_versions"', "state_versions"),
        ('new row violates row-level security policy "p" for table "runs"', "runs"),
        (
            'new row violates row-level security policy (USING expression) for table "store_items"',
            "store_items",
        ),
    ],
)
def test_row_level_security_refusal_is_a_tenant_isolation_error(message: str, table: str) -> None:
    exc = _postgres_error(psycopg.errors.InsufficientPrivilege, message)
    with pytest.raises(TenantIsolationError) as info, translate_errors():
        raise exc
    assert info.value.__cause__ is exc
    assert info.value.table == table
    shown = str(info.value)
    assert repr(table) in shown
    assert "another tenant" in shown and "no tenant is set" in shown
    assert not isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize(
    "message",
    [
        "permission denied for table workspaces",
        'query would be affected by row-level security policy for table "runs"',
    ],
)
def test_other_insufficient_privilege_errors_stay_configuration_errors(message: str) -> None:
    mapped = translate(_postgres_error(psycopg.errors.InsufficientPrivilege, message))
    assert isinstance(mapped, ConfigurationError)
    assert "permission denied" in str(mapped) and message in str(mapped)


@pytest.mark.parametrize(
    "cls, expected",
    [
        (psycopg.errors.QueryCanceled, StatementTimeoutError),
        (psycopg.errors.IdleInTransactionSessionTimeout, StatementTimeoutError),
        (psycopg.errors.ReadOnlySqlTransaction, ReadOnlyError),
        (psycopg.errors.LockNotAvailable, LockNotAcquiredError),
    ],
)
def test_timeouts_and_read_only_refusals_are_translated(
    cls: type[psycopg.Error], expected: type[PersistenceError]
) -> None:
    error = _postgres_error(cls, "canceling statement due to statement timeout")
    mapped = translate(error)
    assert type(mapped) is expected
    assert isinstance(mapped, PersistenceError)
    if expected is StatementTimeoutError:
        assert isinstance(mapped, TimeoutError)


@pytest.mark.parametrize(
    "cls",
    [
        psycopg.errors.NumericValueOutOfRange,
        psycopg.errors.UntranslatableCharacter,
        psycopg.errors.CharacterNotInRepertoire,
    ],
)
def test_data_exceptions_are_invalid_input(cls: type[psycopg.Error]) -> None:
    """SQLSTATE class 22: a value the column cannot hold (validation refuses these first)."""
    with pytest.raises(InvalidInputError, match="refused by the database"), translate_errors():
        raise _postgres_error(cls, "integer out of range")
