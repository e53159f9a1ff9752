"""The error tree and the translation of driver errors (real SQLite errors, no mocks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from persistence import errors
from persistence.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    PersistenceError,
    VersionConflictError,
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
