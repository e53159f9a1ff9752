"""Units of work: one transaction bound to one tenant and workspace, or to administration
(``uow.py``, the sync API, is generated from ``uow_async.py``)."""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session  # sync:
from sqlalchemy.util import await_only  # sync:

from persistence import _scoping_async as _scoping
from persistence._aio import shielded  # sync:
from persistence._begin_async import begin, checkout, enter_admin, reraise_translated
from persistence._compiled import Row, Statement
from persistence._deferred_async import Deferred, enter_now, first_statement, make_ready
from persistence._enter import entry_ids, tenant_record, workspace_record
from persistence._executor_async import driver_of, raise_translated, run, simple_query, sync_of
from persistence._session_reset import DIRTY, mark_clean, mark_dirty, reset_before_end
from persistence._warm import WarmConnections, born, warm_of
from persistence.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    PersistenceError,
    translate_errors,
)
from persistence.records import TenantRecord, WorkspaceRecord
from persistence.repositories._base_async import AsyncScope
from persistence.repositories.scope_keys_async import AsyncScopeKeyRepository
from persistence.repositories.tenancy_async import (
    AsyncTenantRepository,
    AsyncWorkspaceRepository,
)

if TYPE_CHECKING:
    from persistence.access import AccessDescriptor
    from persistence.database_async import AsyncDatabase
    from persistence.records import Page, StoreRecord
    from persistence.repositories.artifacts_async import AsyncArtifactRepository
    from persistence.repositories.runs_async import AsyncRunRepository
    from persistence.repositories.states import AsyncStateRepository
    from persistence.repositories.workflows_async import AsyncWorkflowRepository
    from persistence.stores_async import AsyncStore

__all__ = ["AsyncAdminUnitOfWork", "AsyncUnitOfWork"]

log = logging.getLogger(__name__)
Callback = Callable[[], Any]


class _AsyncTransaction:
    """Owns a unit of work's transaction, its savepoints and the after-commit queue.

    ``connection`` is the transaction's. A PostgreSQL tenant unit of work checks it out
    itself and ends it on the driver (``on_driver``: ``BEGIN`` with the tenant entry and
    ``COMMIT`` go straight to libpq), and builds its ORM ``session``, bound to that
    connection, only when something first asks for one: the hot paths run prepared
    statements on the driver and never need it. Administration and SQLite begin on a
    session and run on its connection.
    """

    def __init__(
        self,
        connection: AsyncConnection,
        session: AsyncSession | None,
        *,
        on_driver: bool,
        warm: WarmConnections[AsyncConnection] | None = None,
    ):
        self.connection = connection
        self._session = session
        self._on_driver = on_driver
        self.warm = warm
        # The tenant entry, while it waits for the first statement (persistence._deferred),
        # and the entry row (as the unit of work last knows it).
        self.pending: Deferred | None = None
        self.entry: Mapping[Any, Any] | None = None
        self.written: set[str] = set()  # cache keys written (read from the database then)
        self.committed = False  # by a last statement (run(..., last=True)), COMMIT with it
        # The connection was lost while a COMMIT was on its way: it may have committed,
        # and what it wrote is not known here (the unit of work forgets its tenant's cache).
        self.in_doubt = False
        # One list per open savepoint: callbacks of a rolled-back savepoint are dropped.
        self._callbacks: list[list[Callback]] = [[]]

    @classmethod
    def on_connection(
        cls, connection: AsyncConnection, warm: WarmConnections[AsyncConnection] | None
    ) -> Self:
        return cls(connection, None, on_driver=True, warm=warm)

    @classmethod
    async def on_session(cls, session: AsyncSession) -> Self:
        try:
            connection = await session.connection()  # begins (SQLite: BEGIN IMMEDIATE)
        except BaseException:
            await shielded(session.close())  # sync: session.close()
            raise
        return cls(connection, session, on_driver=False)

    @property
    def session(self) -> AsyncSession:
        self._require_uncommitted()
        if self._session is None:
            self._session = _session_for(self)
        return self._session

    @property
    def has_session(self) -> bool:
        """Whether the ORM session was handed out (SQL of the caller's own)."""
        return self._session is not None

    async def run(
        self, statement: Statement, params: Mapping[str, Any], *, last: bool = False
    ) -> list[Row]:
        """Run ``statement`` in this transaction (the first one carries the entry).

        ``last``: nothing more runs in this unit of work. On PostgreSQL, outside a
        savepoint and with no ORM session handed out, the statement's ``COMMIT`` goes
        in its round trip (not sent if it fails); the unit of work is then committed,
        and an exception raised in its block after it rolls nothing back. Used only
        for statements that write nothing when the scope turns out to be gone (every
        row carries the tenant row-level security checks and a foreign key to its
        workspace): the entry row is read after the ``COMMIT``.
        """
        self._require_uncommitted()
        pending, commit = self.pending, last and self._commits_with_a_statement()
        try:
            if pending is None:
                found = await run(self.connection, statement, params, commit=commit)
            else:
                found = await first_statement(self, pending, statement, params, commit=commit)
        except DatabaseUnavailableError:
            self.in_doubt = commit and self.connection.invalidated
            raise
        self.committed = commit
        return found

    def _require_uncommitted(self) -> None:
        if self.committed:
            raise PersistenceError(
                "the unit of work committed with its last statement: nothing more can run in it"
            )

    def _commits_with_a_statement(self) -> bool:
        return self._on_driver and self._session is None and len(self._callbacks) == 1

    async def connected(self) -> AsyncConnection:
        """The transaction's connection, its entry sent."""
        self._require_uncommitted()
        if self.pending is not None:
            await enter_now(self, self.pending)
        return self.connection

    def on_commit(self, fn: Callback) -> None:
        """Run ``fn`` after the root transaction commits; never if it rolls back."""
        self._callbacks[-1].append(fn)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: an exception inside rolls back only this block."""
        await self.connected()
        nested = await self.session.begin_nested()
        # The session emits SAVEPOINT lazily, on its first statement; statements on the
        # driver connection (the fast paths) do not go through it, so emit it now.
        await self.session.connection()
        self._callbacks.append([])
        try:
            yield
        except BaseException:
            self._callbacks.pop()
            if nested.is_active:
                await nested.rollback()
            raise
        queued = self._callbacks.pop()
        with translate_errors():
            await nested.commit()
        self._callbacks[-1].extend(queued)

    async def finish(self, failed: bool) -> None:
        committed = self.committed  # (by its last statement: nothing left to send)
        try:
            if failed and not committed:
                await self._reset_before_end(commit=False)
                if self._session is not None:
                    await self._session.rollback()
                if self._on_driver:
                    await self._end_on_driver(commit=False)
                return
            if not committed:
                await self._commit()
                committed = True
        finally:
            if self._session is not None:
                await self._reset_before_end(commit=False)  # (a commit refused: still open)
                await self._session.close()
            if not (committed and self._park()):
                await self.connection.close()
        if self._callbacks[0]:
            await self._run_callbacks()

    async def _commit(self) -> None:
        sent_nothing = self._sent_nothing()
        self._require_committable(sent_nothing)
        try:
            if self._session is not None:
                await self._reset_before_end(commit=True)
                with translate_errors():
                    await self._session.commit()
            if self._on_driver and not sent_nothing:  # what the session did not commit
                await self._end_on_driver(commit=True)  # (raises translated errors itself)
        except DatabaseUnavailableError:
            self.in_doubt = True  # lost on the way: the server may have committed
            raise

    async def _reset_before_end(self, *, commit: bool) -> None:
        """Behind a transaction pooler, reset the session SQL of the caller's own may have
        left state on while this transaction still holds its server connection
        (``persistence._session_reset.reset_before_end``); nothing otherwise."""
        connection = self.connection
        if connection.invalidated or connection.closed:
            return
        query = reset_before_end(sync_of(connection), commit=commit)
        if query is None:
            return
        if commit and self._session is not None:
            with translate_errors():
                await self._session.flush()  # the caller's pending writes, under its tenant
        try:
            await simple_query(driver_of(connection), query)
        except psycopg.Error as exc:
            await raise_translated(connection, query.decode(), (), exc)
        mark_clean(sync_of(connection))

    def _sent_nothing(self) -> bool:
        """Whether nothing of this unit of work reached the server: its entry still
        waits and was never tried (``persistence._deferred``), and no session was
        handed out; its connection is then as it was taken."""
        pending = self.pending
        return pending is not None and not pending.tried and self._session is None

    def _park(self) -> bool:
        """Keep the connection warm for the next unit of work (``persistence._warm``) if
        it is as the pool's checkin would leave it: no transaction, no session state."""
        warm, connection = self.warm, self.connection
        if warm is None or self._session is not None or connection.invalidated:
            return False
        sync = sync_of(connection)
        if sync.closed or sync.in_transaction():
            return False
        pooled = sync.connection
        if pooled.info.get(DIRTY, True):
            return False
        driver: Any = pooled.driver_connection
        if driver.closed or driver.pgconn.transaction_status != TransactionStatus.IDLE:
            return False
        return warm.park(connection, born(sync))

    async def _run_callbacks(self) -> None:
        for fn in self._callbacks[0]:
            try:
                outcome = fn()  # sync: fn()
                if inspect.isawaitable(outcome):  # sync:
                    await outcome  # sync:
            except Exception:  # the data is committed; a failing callback must not hide that
                log.exception("on_commit callback %r failed", fn)

    def _require_committable(self, sent_nothing: bool) -> None:
        """Raise, before anything is committed, if this transaction cannot commit: its
        connection was lost, or PostgreSQL aborted it on an error the caller caught inside
        the block (a COMMIT would silently roll back, and callbacks would run for nothing)."""
        if not self._on_driver:
            return
        if self.pending is not None and self.pending.failure is not None:
            raise self.pending.failure
        if self.connection.invalidated:
            raise DatabaseUnavailableError(
                "the unit of work lost its database connection: nothing was committed"
            )
        if sent_nothing:  # (no transaction on the server, none aborted)
            return
        status = driver_of(self.connection).pgconn.transaction_status
        if status == TransactionStatus.INERROR:
            raise DatabaseError(
                "the unit of work's transaction was aborted by an earlier error (caught inside "
                "the block): it was rolled back and nothing was committed",
                sqlstate="25P02",
            )

    async def _end_on_driver(self, *, commit: bool) -> None:
        """COMMIT or ROLLBACK the server's transaction if it is still open."""
        connection = self.connection
        if connection.invalidated or connection.closed:
            return
        driver: Any = driver_of(connection)
        if driver.closed or driver.pgconn.transaction_status == TransactionStatus.IDLE:
            return
        try:
            await simple_query(driver, b"COMMIT" if commit else b"ROLLBACK")
        except psycopg.Error as exc:
            await raise_translated(connection, "COMMIT" if commit else "ROLLBACK", (), exc)


class _EnteringSession(Session):
    """The ORM session of a PostgreSQL tenant unit of work: bound to its transaction's
    connection, once the tenant entry is sent (``persistence._deferred``: a session's
    first statement sends it first, on a live connection)."""

    def __init__(self, *, transaction: _AsyncTransaction, **kwargs: Any):
        super().__init__(**kwargs)
        self._unit_tx = transaction

    def get_bind(self, *args: Any, **kwargs: Any) -> Connection:
        tx = self._unit_tx
        if tx.pending is not None:  # (inside SQLAlchemy's greenlet, on asyncio)
            await_only(enter_now(tx, tx.pending))  # sync: enter_now(tx, tx.pending)
        return sync_of(tx.connection)


def _session_for(tx: _AsyncTransaction) -> AsyncSession:
    options: dict[str, Any] = {"transaction": tx, "expire_on_commit": False, "autoflush": False}
    options["sync_session_class"] = _EnteringSession  # sync:
    return AsyncSession(**options)  # sync: return _EnteringSession(**options)


class AsyncUnitOfWork:
    """One transaction bound to one tenant and workspace.

    Leaving the ``with`` block without an exception commits; an exception rolls
    everything back. Repositories are reached as attributes (``uow.states`` ...).
    """

    def __init__(self, db: AsyncDatabase, tenant: str, workspace: str, *, read_only: bool = False):
        self._db = db
        self._tenant_slug = tenant
        self._workspace_slug = workspace
        self.read_only = read_only
        self._tx: _AsyncTransaction | None = None
        self._repos: dict[str, object] = {}
        self._entry: Mapping[Any, Any] | None = None
        self._tenant: TenantRecord | None = None
        self._workspace: WorkspaceRecord | None = None

    async def __aenter__(self) -> Self:
        db = self._db
        known = db._known_scopes.get(self._tenant_slug, self._workspace_slug)
        if known is not None and db._legacy_entry is not None:  # (None: the schema changed)
            tx, entry = await self._defer(known), known
        else:
            tx, entry = await begin(
                self._open, self._enter, url=db.settings.url_label, engine=db.engine
            )
            if db.dialect == "postgresql":
                db._known_scopes.remember(self._tenant_slug, self._workspace_slug, entry)
        tx.entry = entry
        self._tx = tx
        self._entry, self._tenant, self._workspace = entry, None, None
        tenant_id, workspace_id = entry_ids(entry)
        self.scope = AsyncScope(
            transaction=tx,
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            settings=self._db.settings,
            dialect=self._db.dialect,
            on_commit=tx.on_commit,
            read_only=self.read_only,
            cache=None if self.read_only else db.cache,
        )
        return self

    async def _open(self) -> _AsyncTransaction:
        if self._db.dialect == "postgresql":
            engine = self._db.engine
            warm = warm_of(engine.sync_engine)  # sync: warm = warm_of(engine)
            return _AsyncTransaction.on_connection(await checkout(engine, warm), warm)
        return await _AsyncTransaction.on_session(self._db._runtime_sessions())

    async def _defer(self, known: Mapping[Any, Any]) -> _AsyncTransaction:
        """A transaction on a connection of the pool whose entry waits for its first
        statement (``persistence._deferred``): nothing is sent yet."""
        db = self._db
        tenant, workspace, read_only = self._tenant_slug, self._workspace_slug, self.read_only
        tx, _ = await begin(self._open, self._ready, url=db.settings.url_label, engine=db.engine)
        tx.pending = Deferred(db, tenant, workspace, known, read_only=read_only)
        return tx

    async def _ready(self, tx: _AsyncTransaction) -> None:
        await make_ready(tx.connection, self._db)

    async def _enter(self, tx: _AsyncTransaction) -> Mapping[Any, Any]:
        if self._db.dialect == "postgresql":
            mark_clean(sync_of(tx.connection))  # until uow.session is handed out
        return await self._db._enter_scope(
            tx, self._tenant_slug, self._workspace_slug, read_only=self.read_only
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx, self._tx = self._tx, None
        if tx is None:
            raise PersistenceError("the unit of work is not open: use it in a `with` block")
        self._entry = tx.entry
        self._repos.clear()
        failed = exc_type is not None
        try:
            await shielded(tx.finish(failed))  # sync: tx.finish(failed)
        finally:
            if tx.in_doubt:
                await shielded(self._forget_cached())  # sync: self._forget_cached()
        if exc is not None:
            reraise_translated(exc, self._db.settings.url_label)

    async def _forget_cached(self) -> None:
        """After a COMMIT in doubt: nothing of the tenant cached before is served, here or
        (the shared tier) anywhere, since what it wrote may have committed."""
        cache = self._db.cache
        if cache is not None and self._entry is not None:
            tenant_id, _ = entry_ids(self._entry)
            await cache.tenant_changed(tenant_id)

    @property
    def tenant(self) -> TenantRecord:
        """The tenant this unit of work is bound to, as its entry read it (before its
        first statement, as this process last entered it: ``persistence._deferred``)."""
        entry = self._entered()
        if self._tenant is None:
            self._tenant = tenant_record(entry)
        return self._tenant

    @property
    def workspace(self) -> WorkspaceRecord:
        """The workspace this unit of work is bound to, as its entry read it."""
        entry = self._entered()
        if self._workspace is None:
            self._workspace = workspace_record(entry)
        return self._workspace

    def _entered(self) -> Mapping[Any, Any]:
        if self._tx is not None and self._tx.entry is not self._entry:  # (sent since)
            self._entry, self._tenant, self._workspace = self._tx.entry, None, None
        if self._entry is None:
            raise PersistenceError("the unit of work has not begun: use it in a `with` block")
        return self._entry

    def _require(self) -> _AsyncTransaction:
        if self._tx is None:
            raise PersistenceError("the unit of work is not open: use it in a `with` block")
        return self._tx

    @property
    def session(self) -> AsyncSession:
        """The ORM session of this unit of work, for SQL of your own. Session state it
        leaves (``SET``, temporary tables, ...) is reset before the connection is reused."""
        tx = self._require()
        mark_dirty(sync_of(tx.connection))
        return tx.session

    def savepoint(self) -> Any:
        """``with uow.savepoint():`` a nested transaction inside this unit of work."""
        return self._require().savepoint()

    def on_commit(self, fn: Callback) -> None:
        """Queue ``fn`` to run after this unit of work commits (dropped on rollback); on
        the asyncio API it may return an awaitable, which is awaited."""
        self._require().on_commit(fn)

    async def access(self, *, ttl: float = 3600, read_only: bool = False) -> AccessDescriptor:
        """An access descriptor of this scope (``Database.access``): JSON another process
        opens with ``Database.from_access``, for this scope only, for ``ttl`` seconds."""
        self._require()
        ids = self.scope.tenant_id, self.scope.workspace_id
        slugs = self.tenant.slug, self.workspace.slug
        session = self.session if self._db.dialect == "sqlite" else None
        return await _scoping.access(
            self._db, *slugs, ttl=ttl, read_only=read_only, ids=ids, session=session
        )

    # -- repositories (built on first use, one per unit of work) -----------------

    @property
    def states(self) -> AsyncStateRepository:
        # (from its module, not its package: a package's import runs more Python)
        from persistence.repositories.states.repository_async import AsyncStateRepository

        return self._repo("states", AsyncStateRepository)  # type: ignore[no-any-return]

    @property
    def workflows(self) -> AsyncWorkflowRepository:
        from persistence.repositories.workflows_async import AsyncWorkflowRepository

        return self._repo("workflows", AsyncWorkflowRepository)  # type: ignore[no-any-return]

    @property
    def artifacts(self) -> AsyncArtifactRepository:
        from persistence.repositories.artifacts_async import AsyncArtifactRepository

        return self._repo("artifacts", AsyncArtifactRepository)  # type: ignore[no-any-return]

    @property
    def runs(self) -> AsyncRunRepository:
        from persistence.repositories.runs_async import AsyncRunRepository

        return self._repo("runs", AsyncRunRepository)  # type: ignore[no-any-return]

    def store(self, name: str) -> AsyncStore:
        """The key/value store ``name`` inside this unit of work's transaction."""
        from persistence.stores_async import AsyncStore

        self._require()
        return AsyncStore.for_unit_of_work(self, name)

    async def list_stores(
        self, *, limit: int = 100, cursor: str | None = None
    ) -> Page[StoreRecord]:
        """The workspace's stores ordered by name, one page at a time."""
        from persistence.repositories.stores_async import AsyncStoreRepository

        return await AsyncStoreRepository(self._scope()).list_stores(limit=limit, cursor=cursor)

    async def delete_store(self, name: str) -> None:
        """Delete the store and its items; NotFoundError if it does not exist."""
        from persistence.repositories.stores_async import AsyncStoreRepository

        with translate_errors():
            await AsyncStoreRepository(self._scope()).delete_store(name)

    def _scope(self) -> AsyncScope:
        self._require()
        return self.scope

    def _repo(self, name: str, factory: Callable[[AsyncScope], object]) -> Any:
        if self._tx is None:
            self._require()  # (raises)
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = factory(self.scope)
        return repo


class AsyncAdminUnitOfWork:
    """Tenant administration in one transaction, as the owner role (not tenant-scoped)."""

    tenants: AsyncTenantRepository
    workspaces: AsyncWorkspaceRepository
    scope_keys: AsyncScopeKeyRepository

    def __init__(self, db: AsyncDatabase):
        self._db = db
        self._tx: _AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        db = self._db
        self._tx, _ = await begin(self._open, self._check, url=self._url, engine=db.owner_engine)
        session = self._tx.session
        self.tenants = AsyncTenantRepository(session, self._changed)
        self.workspaces = AsyncWorkspaceRepository(session, self._changed)
        self.scope_keys = AsyncScopeKeyRepository(session)
        self._changes: set[uuid.UUID] = set()
        return self

    def _changed(self, tenant_id: uuid.UUID) -> None:
        """A tenant changed: once committed, units of work and the read cache (here and,
        through Redis, in other processes) forget what they knew of it."""
        if tenant_id not in self._changes and self._tx is not None:
            self._changes.add(tenant_id)
            db = self._db
            self._tx.on_commit(lambda: db._tenant_changed(tenant_id))

    async def _open(self) -> _AsyncTransaction:
        return await _AsyncTransaction.on_session(self._db._owner_sessions())

    async def _check(self, tx: _AsyncTransaction) -> None:
        if self._db.dialect == "postgresql":
            await enter_admin(tx.connection, self._url())
            mark_clean(sync_of(tx.connection))  # administration leaves no session state

    def _url(self) -> str:
        return self._db.settings.url_label(owner=True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            failed = exc_type is not None
            await shielded(tx.finish(failed))  # sync: tx.finish(failed)
        reraise_translated(exc, self._url)

    def on_commit(self, fn: Callback) -> None:
        if self._tx is None:
            raise PersistenceError("the admin unit of work is not open")
        self._tx.on_commit(fn)
