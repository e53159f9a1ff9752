"""The error tree and the translation of driver errors (real SQLite errors, and real
psycopg exception objects for the PostgreSQL-only SQLSTATEs; no mocks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from persistence import errors
from persistence.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    LockNotAcquiredError,
    PersistenceError,
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


def test_untranslatable_errors_pass_through(conn: object) -> None:
    with pytest.raises(DBAPIError), translate_errors():
        conn.execute(text("SELECT * FROM missing_table"))  # type: ignore[attr-defined]


def _postgres_error(cls: type[psycopg.Error], message: str) -> DBAPIError:
    """What SQLAlchemy raises for a psycopg error (its SQLSTATE comes from ``cls``)."""
    return DBAPIError.instance("INSERT ...", {}, cls(message), psycopg.Error)


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
