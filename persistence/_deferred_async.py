"""The tenant entry a PostgreSQL unit of work defers to its first statement.

A unit of work of a scope (tenant and workspace) this process has entered before knows
the scope's ids from then (:class:`KnownScopes`), so it sends nothing as it begins.
Its first statement goes out with ``BEGIN`` and the tenant entry in one round trip
(``persistence._executor.run_entering``): the statement needs the ids, not the entry's
row, which is read when the round trip is back. A unit of work that sends nothing
costs no round trip at all, and one that writes costs two (that one, then ``COMMIT``).

The row confirms what the unit of work assumed: the tenant active, the workspace there,
the same ids. When it does not (the tenant was suspended, deleted or renamed since, or
deleted and created again under its slug), the transaction is rolled back before
anything of it is used, the scope is forgotten, and the unit of work raises the error
its entry would have raised at ``with`` (NotFoundError, TenantSuspendedError) on that
statement and on any after it: nothing it did commits. A statement sent for a tenant
that is no longer there runs under row-level security for a different tenant setting
(none, or the new tenant's), so it read and wrote nothing of anyone's.

Code that needs the connection itself (SQLAlchemy statements, a session, streaming)
asks for it with :func:`enter_now`, which sends the entry alone first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence import _enter, _pool, _role_check
from persistence._aio import shielded  # sync:
from persistence._begin_async import checkout
from persistence._compiled import Statement
from persistence._executor_async import Row, driver_of, run_entering, simple_query, sync_of
from persistence._session_reset import DIRTY, mark_dirty
from persistence._warm import WarmConnections
from persistence._wire import closed_meanwhile
from persistence.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    NotFoundError,
    PersistenceError,
    ScopeGoneError,
    TenantSuspendedError,
    translate,
)

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase

__all__ = ["Deferred", "KnownScopes", "enter_now", "first_statement", "make_ready"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_LIMIT = 4096


class KnownScopes:
    """Per database: the entry row last read for each (tenant, workspace) pair of slugs,
    so that a unit of work of a scope seen before can defer its entry. Bounded: a
    process serving more scopes than that starts over."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Mapping[Any, Any]] = {}

    def get(self, tenant: Any, workspace: Any) -> Mapping[Any, Any] | None:
        if type(tenant) is not str or type(workspace) is not str:
            return None  # (validated, and refused, by the full entry)
        return self._rows.get((tenant, workspace))

    def remember(self, tenant: str, workspace: str, row: Mapping[Any, Any]) -> None:
        if len(self._rows) >= _LIMIT:
            self._rows.clear()
        self._rows[(tenant, workspace)] = row

    def forget(self, tenant: str, workspace: str) -> None:
        self._rows.pop((tenant, workspace), None)

    def forget_tenant(self, tenant_id: str) -> None:
        """Forget every scope of the tenant ``tenant_id`` (it changed: the read cache's
        invalidation, ``persistence._cache_front``)."""
        for scope, row in list(self._rows.items()):
            if str(row["tenant_id"]) == tenant_id:
                self._rows.pop(scope, None)

    def clear(self) -> None:
        self._rows.clear()


class Deferred:
    """A unit of work's entry, not sent yet: its slugs, the row it assumes, and, once the
    entry found the scope gone, the error every statement after raises."""

    __slots__ = (
        "db",
        "failure",
        "known",
        "path",
        "read_only",
        "tenant",
        "tried",
        "workspace",
    )

    def __init__(
        self,
        db: AsyncDatabase,
        tenant: str,
        workspace: str,
        known: Mapping[Any, Any],
        *,
        read_only: bool,
    ):
        self.db = db
        # The search_path its first entry pinned: then only the token is set (SCOPE_SET).
        # Both found when the entry is sent (a unit of work that sends nothing costs none).
        self.path: str | None = None
        self.tenant = tenant
        self.workspace = workspace
        self.known = known
        self.read_only = read_only
        self.failure: PersistenceError | None = None
        self.tried = False  # whether sending the entry began (the server saw something)

    def entry(self) -> tuple[Statement, Mapping[str, Any]]:
        """The entry's statement and parameters (``run_entering`` sends them)."""
        db = self.db
        if db._legacy_entry:  # (a schema before 0010)
            return _enter.LEGACY_ENTRY, {"tenant": self.tenant, "workspace": self.workspace}
        ids = _enter.entry_ids(self.known)  # (a known scope: its key is loaded)
        token = db._signer.token(self.tenant, self.workspace, self.read_only, ids)
        self.path = _enter.pinned_path(self.known)
        if self.path is not None:  # (the statement's policies verify the token)
            return _enter.SCOPE_SET, {"token": token, "search_path": self.path}
        return _enter.ENTRY["postgresql"], {"token": token}

    def mismatch(self, row: Mapping[Any, Any] | None) -> PersistenceError | None:
        """Why the scope ``row`` shows is not the one this unit of work began in, if so."""
        if row is None:  # (its token names the ids this process entered before)
            return NotFoundError(
                f"tenant {self.tenant!r} / workspace {self.workspace!r} was deleted, or "
                f"deleted and created again, since this process entered it: run it again"
            )
        try:
            _enter.require_entered(row, self.tenant, self.workspace)
        except PersistenceError as exc:
            return exc
        assert row is not None
        if _enter.entry_ids(row) != _enter.entry_ids(self.known):
            return NotFoundError(
                f"tenant {self.tenant!r} / workspace {self.workspace!r} was deleted and "
                f"created again while this unit of work began: run it again"
            )
        return None


class _Transaction(Protocol):
    connection: AsyncConnection
    pending: Deferred | None
    entry: Mapping[Any, Any] | None
    warm: WarmConnections[Any] | None

    @property
    def has_session(self) -> bool: ...


async def first_statement(
    tx: _Transaction,
    deferred: Deferred,
    statement: Statement,
    params: Mapping[str, Any],
    *,
    commit: bool = False,
) -> list[Row]:
    """Run ``statement`` as the first of ``tx``, with ``BEGIN`` and the entry (and
    ``COMMIT``, if ``commit``: see :func:`_on_live_connection_once`)."""
    if deferred.failure is not None:
        raise deferred.failure
    deferred.tried = True
    begin = _enter.PIPELINED_BEGIN[deferred.read_only]

    async def attempt() -> tuple[Any, list[Row] | PersistenceError]:
        connection, entry = tx.connection, deferred.entry()
        return await run_entering(connection, begin, entry, statement, params, commit=commit)

    try:
        if commit:
            entered, outcome = await _on_live_connection_once(tx, deferred, attempt)
        else:
            entered, outcome = await _on_live_connection(tx, deferred, attempt)
    except ConfigurationError:  # (the schema changed: see persistence._scoping)
        deferred.db._legacy_entry = None
        raise
    if entry_light := deferred.path is not None:
        row: Mapping[Any, Any] | None = deferred.known
        if isinstance(outcome, ScopeGoneError | TenantSuspendedError):  # (per statement)
            deferred.failure = outcome
    else:
        row = _enter.EntryRow(entered) if entered.ntuples else None
    await _settle(tx, deferred, row, checked=entry_light)
    if isinstance(outcome, PersistenceError):
        raise outcome
    return outcome


async def enter_now(tx: _Transaction, deferred: Deferred) -> None:
    """Send ``tx``'s entry alone (``BEGIN`` and the entry: one round trip), before
    statements that do not go through :func:`first_statement`."""
    if deferred.failure is not None:
        raise deferred.failure
    deferred.tried = True
    db = deferred.db

    async def attempt() -> Mapping[Any, Any] | None:
        try:
            return await db._enter_scope(
                tx, deferred.tenant, deferred.workspace, read_only=deferred.read_only
            )
        except DatabaseUnavailableError:
            raise
        except PersistenceError as exc:  # the scope is gone: _settle says so
            deferred.failure = exc
            return None

    row = await _on_live_connection(tx, deferred, attempt)
    await _settle(tx, deferred, row)


async def _settle(
    tx: _Transaction, deferred: Deferred, row: Mapping[Any, Any] | None, *, checked: bool = False
) -> None:
    """Take the entry's ``row``: the unit of work is entered, or its scope is gone (its
    transaction rolled back, the scope forgotten, the error raised now and after).
    ``checked``: the row is the known one (the statement's policies checked the scope)."""
    problem = deferred.failure or (None if checked else deferred.mismatch(row))
    if problem is None:
        tx.pending, tx.entry = None, row
        deferred.db._known_scopes.remember(deferred.tenant, deferred.workspace, row)  # type: ignore[arg-type]
        return
    deferred.failure = problem
    deferred.db._known_scopes.forget(deferred.tenant, deferred.workspace)
    await shielded(_roll_back(tx.connection))  # sync: _roll_back(tx.connection)
    raise problem


async def _roll_back(connection: AsyncConnection) -> None:
    if connection.invalidated or connection.closed:
        return
    driver = driver_of(connection)
    if driver.closed or driver.pgconn.transaction_status == TransactionStatus.IDLE:
        return
    try:
        await simple_query(driver, b"ROLLBACK")
    except psycopg.Error as exc:  # broken meanwhile: never pooled again
        await connection.invalidate(exc)


async def _on_live_connection(
    tx: _Transaction, deferred: Deferred, attempt: Callable[[], Awaitable[T]]
) -> T:
    """``attempt()``, and once more on another connection if ``tx``'s was dead.

    A pooled connection can be dead without the pool knowing (see
    ``persistence._begin.begin``): the first round trip of the unit of work then fails
    with DatabaseUnavailableError before anything of it ran, so it can run again.
    """
    try:
        return await attempt()
    except DatabaseUnavailableError as exc:
        cause = getattr(exc.__cause__, "orig", exc.__cause__)
        log.warning("a pooled database connection was dead (%s); entering on another", cause)
    db = deferred.db
    await shielded(_replace_connection(tx, db))  # sync: _replace_connection(tx, db)
    return await attempt()


async def _on_live_connection_once(
    tx: _Transaction, deferred: Deferred, attempt: Callable[[], Awaitable[T]]
) -> T:
    """``attempt()`` of a batch that commits, once: it may have committed when its
    connection is lost on the way, so it never runs again. A pooled connection the server
    closed meanwhile (``persistence._wire.closed_meanwhile``) is replaced before it."""
    driver = driver_of(tx.connection)
    if closed_meanwhile(driver.pgconn):
        log.warning("a pooled database connection was closed by the server; entering on another")
        db = deferred.db
        await shielded(_replace_connection(tx, db))  # sync: _replace_connection(tx, db)
    return await attempt()


async def _replace_connection(tx: _Transaction, db: AsyncDatabase) -> None:
    dead, engine = tx.connection, db.engine
    if not dead.invalidated:
        await dead.invalidate()
    await dead.close()
    _pool.doubt(engine.sync_engine)  # sync: _pool.doubt(engine)
    try:
        tx.connection = await checkout(engine, tx.warm)
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, db.settings.url_label()) from exc
    await make_ready(tx.connection, db)
    if tx.has_session:  # (SQL of the caller's own: reset at checkin)
        mark_dirty(sync_of(tx.connection))


async def make_ready(connection: AsyncConnection, db: AsyncDatabase) -> None:
    """Ready a connection of the pool for a tenant unit of work whose entry waits: its
    session marked clean (until ``uow.session`` is handed out) and its role checked
    (``persistence._role_check``: a look-up, no round trip)."""
    info = sync_of(connection).connection.info
    info[DIRTY] = False  # (mark_clean, on the info at hand)
    if not (db.settings.allow_rls_bypass or _role_check.bound(info)):
        await _role_check.require_rls_async(connection)  # sync: _role_check.require_rls(connection)
