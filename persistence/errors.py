"""The one error tree of the library; database driver errors are translated here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy import exc as sa_exc

__all__ = [
    "AlreadyExistsError",
    "ConfigurationError",
    "ConflictError",
    "DataCorruptionError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "InvalidInputError",
    "InvalidTypeError",
    "LeaseLostError",
    "LockNotAcquiredError",
    "NotFoundError",
    "PersistenceError",
    "PoolExhaustedError",
    "ReadOnlyError",
    "ScopeGoneError",
    "ScopeTokenError",
    "StaleFenceError",
    "StatementTimeoutError",
    "TenantIsolationError",
    "TenantSuspendedError",
    "VersionConflictError",
    "translate",
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


class ScopeGoneError(NotFoundError):
    """The tenant or workspace a unit of work's scope names was deleted (or deleted and
    created again) since its process entered it."""


class TenantSuspendedError(PersistenceError):
    """The tenant is suspended; its data cannot be used until it is resumed."""


class TenantIsolationError(PersistenceError):
    """PostgreSQL row-level security refused a row: it belongs to another tenant than
    the unit of work's, or no tenant is set (a connection used outside a unit of work).

    ``table`` names the table the row was refused for."""

    def __init__(self, message: str, *, table: str | None = None):
        super().__init__(message)
        self.table = table


class ScopeTokenError(TenantIsolationError):
    """A scope token (or the access descriptor carrying it) was refused: malformed,
    signed by no active key, edited, for another scope, or expired (``expired`` True)."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


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
    """The library is configured wrongly (bad URL, unknown role or database, missing GRANT,
    migrations not run); the message says the fix."""


class DatabaseUnavailableError(PersistenceError, ConnectionError):
    """The database cannot be reached (down, unreachable, not accepting connections), or
    the connection was lost in the middle of a unit of work. The server rolls back a
    transaction that had not committed; retry once the database is back."""


class PoolExhaustedError(PersistenceError, TimeoutError):
    """Every connection of the pool stayed in use for ``pool_timeout`` seconds: too many
    units of work open at once for ``pool_size`` + ``max_overflow``."""


class DatabaseError(PersistenceError):
    """A database error with no more specific meaning to a caller; ``sqlstate`` is its
    SQLSTATE when the driver gave one, the driver's error is the ``__cause__``."""

    def __init__(self, message: str, *, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


# -- translation: SQLSTATE -> error ------------------------------------------------------
# SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html

_OWNER_URL = "owner_database_url / PERSISTENCE_OWNER_DATABASE_URL"
_UPGRADE = "run `persistence db upgrade` (or db.migrate()) with the owner URL"
# 42501 is also what a row-level security WITH CHECK failure raises, as
# 'new row violates row-level security policy [("name"|(USING expression))] for table "t"'
# (other 42501 messages, such as a missing GRANT or row_security = off, stay configuration).
_RLS_VIOLATION = re.compile(
    r'new row violates row-level security policy\b.*?\bfor table "(?P<table>[^"]+)"'
)
_UNDEFINED_TABLE = re.compile(r'relation "(?:[^"]*\.)?(?P<table>[^"]+)" does not exist')
_SQLITE_NO_TABLE = re.compile(r"no such table: (?:\w+\.)?(?P<table>\w+)")

# Errors without a SQLSTATE, recognised by their message: sqlite3's, and psycopg's on
# connecting (libpq reports a refused login as text only; the server's text is English
# unless lc_messages says otherwise, and an unrecognised one counts as unreachable).
_SQLITE_MESSAGES = (
    ("UNIQUE constraint failed", "23505"),
    ("PRIMARY KEY", "23505"),
    ("FOREIGN KEY constraint failed", "23503"),
    ("CHECK constraint failed", "23514"),
    ("NOT NULL constraint failed", "23502"),
    ("attempt to write a readonly database", "25006"),  # PRAGMA query_only
    ("no such table", "42P01"),
)
_CONNECT_MESSAGES = (
    (re.compile(r'role "[^"]*" does not exist|not permitted to log in|no pg_hba\.conf'), "28000"),
    (re.compile(r"password authentication failed|no password supplied"), "28P01"),
    (re.compile(r'database "[^"]*" does not exist'), "3D000"),
    (re.compile(r"the database system is (starting up|shutting down|in recovery)"), "57P03"),
    (re.compile(r"too many (clients|connections)"), "53300"),
    (re.compile(r"connection failed|connection to server .* failed|timeout expired"), "08001"),
)


@dataclass(frozen=True)
class _Failure:
    state: str  # "" when unknown
    detail: str  # the driver's message, its first line only: never the statement
    url: str | None  # which URL was in use, masked (see Settings.url_label)

    @property
    def in_url(self) -> str:
        return f" in {self.url}" if self.url else " in the database URL"


def _sqlstate(exc: sa_exc.DBAPIError) -> str:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state
    message = str(orig)
    if isinstance(orig, psycopg.OperationalError):
        for pattern, code in _CONNECT_MESSAGES:
            if pattern.search(message):
                return code
        return "08006"  # connection_failure: lost, or never made
    if isinstance(orig, psycopg.Error):
        return ""
    for fragment, code in _SQLITE_MESSAGES:
        if fragment in message:
            return code
    return ""


def _detail(exc: sa_exc.DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines()
    first = lines[0] if lines else type(exc.orig).__name__
    # A refused connection: "connection failed: connection to server at ... failed: FATAL:  x"
    return first.split("FATAL:", 1)[-1].strip()


def _ours(table: str) -> bool:
    from persistence.migrations import VERSION_TABLE
    from persistence.models import metadata

    return table in metadata.tables or table == VERSION_TABLE


def _cannot_connect(f: _Failure) -> PersistenceError:
    return DatabaseUnavailableError(
        f"cannot connect to the database{f.in_url}: {f.detail}. Check that the server is "
        "running and reachable at the host and port of that URL"
    )


def _lost(f: _Failure) -> PersistenceError:
    return DatabaseUnavailableError(
        f"lost the connection to the database ({f.detail}): the server rolls back a "
        "transaction that had not committed (lost during COMMIT, it may have committed); "
        "retry the unit of work once the database is reachable"
    )


def _not_now(f: _Failure) -> PersistenceError:
    return DatabaseUnavailableError(
        f"the database is not accepting connections now ({f.detail}): retry shortly"
    )


def _too_many(f: _Failure) -> PersistenceError:
    return DatabaseUnavailableError(
        f"the database refused a connection ({f.detail}): lower pool_size / max_overflow "
        "(PERSISTENCE_POOL_SIZE / PERSISTENCE_MAX_OVERFLOW) across processes, or raise the "
        "server's max_connections"
    )


def _bad_role(f: _Failure) -> PersistenceError:
    return ConfigurationError(
        f"the database refused the login ({f.detail}): fix the user{f.in_url}, or create "
        "the role (a runtime role: `persistence db create-runtime-role NAME` as the owner)"
    )


def _bad_password(f: _Failure) -> PersistenceError:
    return ConfigurationError(f"{f.detail}: fix the password{f.in_url}")


def _no_database(f: _Failure) -> PersistenceError:
    return ConfigurationError(f"{f.detail}: fix the database name{f.in_url}, or create it")


def _migrations_missing(f: _Failure) -> PersistenceError:
    return ConfigurationError(
        f"the persistence schema is missing or not at head ({f.detail}): {_UPGRADE}"
    )


def _undefined_function(f: _Failure) -> PersistenceError:
    if "persistence_enter" in f.detail:
        return _migrations_missing(f)
    return _unmapped(f)


def _undefined_table(f: _Failure) -> PersistenceError:
    found = _UNDEFINED_TABLE.search(f.detail) or _SQLITE_NO_TABLE.search(f.detail)
    if found and _ours(found["table"]):
        return _migrations_missing(f)
    return _unmapped(f)


def _insufficient_privilege(f: _Failure) -> PersistenceError:
    if rls := _RLS_VIOLATION.search(f.detail):
        return TenantIsolationError(
            f"row-level security refused a row for table {rls['table']!r}: it belongs to "
            f"another tenant or workspace than the unit of work's, or no tenant is set "
            f"({f.detail})",
            table=rls["table"],
        )
    return ConfigurationError(
        f"permission denied ({f.detail}): use the owner URL ({_OWNER_URL}) for "
        "administration and migrations, or grant the runtime role what it needs with "
        "`persistence db create-runtime-role NAME`"
    )


def _unmapped(f: _Failure) -> PersistenceError:
    shown = f" ({f.state})" if f.state else ""
    return DatabaseError(f"database error{shown}: {f.detail}", sqlstate=f.state or None)


# Keyed by SQLSTATE, or by its two-character class when no full code matches.
_BY_SQLSTATE: dict[str, Callable[[_Failure], PersistenceError]] = {
    "23505": lambda f: AlreadyExistsError(f"already exists: {f.detail}"),
    "23503": lambda f: ConflictError(f"conflicting write: {f.detail}"),  # foreign key
    "40001": lambda f: ConflictError(f"conflicting write: {f.detail}"),  # serialization
    "40P01": lambda f: ConflictError(f"conflicting write: {f.detail}"),  # deadlock
    "23514": lambda f: InvalidInputError(f"refused by the database: {f.detail}"),  # check
    "23502": lambda f: InvalidInputError(f"refused by the database: {f.detail}"),  # not null
    # class 22, data exception: a value the column cannot hold (out of range, NUL in text,
    # bad encoding). Validation refuses these before any statement: the safety net.
    "22": lambda f: InvalidInputError(f"refused by the database: {f.detail}"),
    "57014": lambda f: StatementTimeoutError(f"statement cancelled: {f.detail}"),
    "25P03": lambda f: StatementTimeoutError(  # idle_in_transaction_session_timeout
        "the transaction sat idle longer than idle_in_transaction_timeout_ms: the "
        f"database ended its connection and rolled it back ({f.detail})"
    ),
    "25006": lambda f: ReadOnlyError(f"this unit of work is read-only: {f.detail}"),
    "55P03": lambda f: LockNotAcquiredError(f"lock not available: {f.detail}"),
    "42501": _insufficient_privilege,
    "PS001": lambda f: ScopeTokenError(f"the database refused the scope token: {f.detail}"),
    "PS002": lambda f: ScopeTokenError(
        f"the database refused the scope token: {f.detail}", expired=True
    ),
    "PS003": lambda f: TenantSuspendedError(f"the tenant is suspended ({f.detail})"),
    "PS004": lambda f: ScopeGoneError(f"{f.detail}: run the unit of work again"),
    "42883": _undefined_function,
    "42P01": _undefined_table,
    "28000": _bad_role,  # invalid_authorization_specification
    "28P01": _bad_password,
    "3D000": _no_database,
    "08001": _cannot_connect,  # sqlclient_unable_to_establish_sqlconnection
    "08": _lost,  # connection exception
    "57P01": _lost,  # admin_shutdown (pg_terminate_backend, a restart)
    "57P02": _lost,  # crash_shutdown
    "57P03": _not_now,  # cannot_connect_now
    "53300": _too_many,
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].split(" (Background on this error at:")[0] if text else type(exc).__name__


def translate(exc: sa_exc.SQLAlchemyError, url: str | None = None) -> PersistenceError:
    """The library's error for a SQLAlchemy or driver error: by SQLSTATE, else a
    :class:`DatabaseError`. ``url`` (which URL was in use, masked) is named in messages
    about connecting. No message includes the statement or its parameters."""
    if isinstance(exc, sa_exc.TimeoutError):  # the pool's checkout (QueuePool)
        return PoolExhaustedError(
            f"no pooled connection became free in time ({_first_line(exc)}): raise pool_size "
            "/ max_overflow (PERSISTENCE_POOL_SIZE / PERSISTENCE_MAX_OVERFLOW) or pool_timeout "
            "(PERSISTENCE_POOL_TIMEOUT), or end units of work sooner (one opened inside "
            "another in the same thread holds a second connection)"
        )
    if not isinstance(exc, sa_exc.DBAPIError):
        return DatabaseError(f"database error: {_first_line(exc)}")
    failure = _Failure(_sqlstate(exc), _detail(exc), url)
    build = _BY_SQLSTATE.get(failure.state) or _BY_SQLSTATE.get(failure.state[:2])
    if build is None and exc.connection_invalidated:  # SQLAlchemy saw a disconnect
        build = _lost
    return (build or _unmapped)(failure)


@contextmanager
def translate_errors(url: str | None = None) -> Iterator[None]:
    """Re-raise every SQLAlchemy or driver error as a :class:`PersistenceError` subclass
    (``raise ... from``); ``url`` as in :func:`translate`."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, url) from exc
