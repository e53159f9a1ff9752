"""The one error tree of the library; database driver errors are translated here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

__all__ = [
    "AlreadyExistsError",
    "ConfigurationError",
    "ConflictError",
    "DataCorruptionError",
    "InvalidInputError",
    "InvalidTypeError",
    "LeaseLostError",
    "LockNotAcquiredError",
    "NotFoundError",
    "PersistenceError",
    "ReadOnlyError",
    "StaleFenceError",
    "StatementTimeoutError",
    "TenantIsolationError",
    "TenantSuspendedError",
    "VersionConflictError",
    "translate_errors",
]


class PersistenceError(Exception):
    """Base of every error the library raises."""


class NotFoundError(PersistenceError, LookupError):
    """The addressed tenant, workspace or object does not exist."""


class AlreadyExistsError(PersistenceError):
    """An object with the same identity already exists."""


class ConflictError(PersistenceError):
    """The write conflicts with the current state of the data."""


class VersionConflictError(ConflictError):
    """Optimistic concurrency failed: the latest version is not the expected one."""

    def __init__(self, message: str, *, expected: int | None = None, actual: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class StaleFenceError(ConflictError):
    """A write carried a fencing token lower than one already recorded."""


class TenantSuspendedError(PersistenceError):
    """The tenant is suspended; its data cannot be used until it is resumed."""


class TenantIsolationError(PersistenceError):
    """PostgreSQL row-level security refused a row: it belongs to another tenant than
    the unit of work's, or no tenant is set (a connection used outside a unit of work).

    ``table`` names the table the row was refused for."""

    def __init__(self, message: str, *, table: str | None = None):
        super().__init__(message)
        self.table = table


class StatementTimeoutError(PersistenceError, TimeoutError):
    """The database cancelled a statement that ran (or waited for a lock) longer than
    ``statement_timeout_ms``; the unit of work rolls back."""


class ReadOnlyError(PersistenceError):
    """A write inside a read-only unit of work (``db.unit_of_work(..., read_only=True)``)."""


class LockNotAcquiredError(PersistenceError):
    """A lease could not be acquired (held elsewhere, or the lock service is unreachable)."""


class LeaseLostError(PersistenceError):
    """The lease expired or was taken over before it was extended or released."""


class DataCorruptionError(PersistenceError):
    """A stored payload does not match its checksum or cannot be decoded."""


class InvalidInputError(PersistenceError, ValueError):
    """Input was refused before anything was written."""


class InvalidTypeError(InvalidInputError, TypeError):
    """Input of the wrong type (a non-JSON value, a non-string key)."""


class ConfigurationError(PersistenceError):
    """The library is configured wrongly (bad URL, missing role, unknown setting)."""


# SQLSTATE classes: https://www.postgresql.org/docs/current/errcodes-appendix.html
_UNIQUE_VIOLATION = "23505"
_FOREIGN_KEY_VIOLATION = "23503"
_CHECK_VIOLATION = "23514"
_NOT_NULL_VIOLATION = "23502"
_SERIALIZATION_FAILURE = "40001"
_DEADLOCK = "40P01"
_LOCK_NOT_AVAILABLE = "55P03"
_INSUFFICIENT_PRIVILEGE = "42501"
_READ_ONLY_TRANSACTION = "25006"
_QUERY_CANCELED = "57014"  # statement_timeout (or a cancel request)
# Class 22, data exception: a value the column cannot hold (out of range, NUL in text,
# bad encoding). Validation refuses these before any statement; this is the safety net.
_DATA_EXCEPTION_CLASS = "22"
# 42501 is also what a row-level security WITH CHECK failure raises, as
# 'new row violates row-level security policy [("name"|(USING expression))] for table "t"'
# (other 42501 messages, such as a missing GRANT or row_security = off, stay configuration).
_RLS_VIOLATION = re.compile(
    r'new row violates row-level security policy\b.*?\bfor table "(?P<table>[^"]+)"'
)


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state
    # sqlite3 errors carry no SQLSTATE; map the ones that matter by their message.
    message = str(orig)
    if "UNIQUE constraint failed" in message or "PRIMARY KEY" in message:
        return _UNIQUE_VIOLATION
    if "FOREIGN KEY constraint failed" in message:
        return _FOREIGN_KEY_VIOLATION
    if "CHECK constraint failed" in message:
        return _CHECK_VIOLATION
    if "NOT NULL constraint failed" in message:
        return _NOT_NULL_VIOLATION
    if "attempt to write a readonly database" in message:  # PRAGMA query_only
        return _READ_ONLY_TRANSACTION
    return None


def translate(exc: sa_exc.DBAPIError) -> PersistenceError | None:
    """Map a driver error to the library's error tree by SQLSTATE, or ``None``."""
    state = _sqlstate(exc)
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if state == _UNIQUE_VIOLATION:
        return AlreadyExistsError(f"already exists: {detail}")
    if state in (_FOREIGN_KEY_VIOLATION, _SERIALIZATION_FAILURE, _DEADLOCK):
        return ConflictError(f"conflicting write: {detail}")
    if state in (_CHECK_VIOLATION, _NOT_NULL_VIOLATION) or (
        state is not None and state.startswith(_DATA_EXCEPTION_CLASS)
    ):
        return InvalidInputError(f"refused by the database: {detail}")
    if state == _QUERY_CANCELED:
        return StatementTimeoutError(f"statement cancelled: {detail}")
    if state == _READ_ONLY_TRANSACTION:
        return ReadOnlyError(f"this unit of work is read-only: {detail}")
    if state == _LOCK_NOT_AVAILABLE:
        return LockNotAcquiredError(f"lock not available: {detail}")
    if state == _INSUFFICIENT_PRIVILEGE and (rls := _RLS_VIOLATION.search(detail)):
        return TenantIsolationError(
            f"row-level security refused a row for table {rls['table']!r}: it belongs to "
            f"another tenant than the unit of work's, or no tenant is set ({detail})",
            table=rls["table"],
        )
    if state == _INSUFFICIENT_PRIVILEGE:
        return ConfigurationError(f"permission denied (check the database role): {detail}")
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise driver errors as :class:`PersistenceError` subclasses (``raise ... from``)."""
    try:
        yield
    except sa_exc.DBAPIError as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
