"""Units of work: one transaction bound to one tenant and workspace, or to administration."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from persistence._connect import begin, reraise_translated
from persistence._enter import enter_admin, entry_ids, tenant_record, workspace_record
from persistence._executor import raise_translated, simple_query
from persistence._session_reset import mark_dirty
from persistence.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    PersistenceError,
    translate_errors,
)
from persistence.records import TenantRecord, WorkspaceRecord
from persistence.repositories._base import Scope
from persistence.repositories.tenancy import TenantRepository, WorkspaceRepository

if TYPE_CHECKING:
    from persistence.access import AccessDescriptor
    from persistence.database import Database
    from persistence.records import Page, StoreRecord
    from persistence.repositories.artifacts import ArtifactRepository
    from persistence.repositories.runs import RunRepository
    from persistence.repositories.states import StateRepository
    from persistence.repositories.workflows import WorkflowRepository
    from persistence.stores import Store

__all__ = ["AdminUnitOfWork", "UnitOfWork"]

log = logging.getLogger(__name__)
Callback = Callable[[], Any]


class _Transaction:
    """Owns a unit of work's transaction, its savepoints and the after-commit queue.

    Administration and SQLite run on a session from the start. A PostgreSQL unit of
    work begins on a pooled ``Connection`` (``BEGIN`` and the tenant entry go straight
    to the driver) and builds its ``Session``, bound to that connection, only when a
    repository first asks for one: the hot paths (load or save a state, get or set a
    key) run prepared statements on the driver and never need it, so they skip the
    session's own begin, commit and close.
    """

    def __init__(self, session: Session | None = None, connection: Connection | None = None):
        if (session is None) == (connection is None):
            raise TypeError("give a session or a connection")
        self._session = session
        self.connection = connection
        # One list per open savepoint: callbacks of a rolled-back savepoint are dropped.
        self._callbacks: list[list[Callback]] = [[]]

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(bind=self.connection, expire_on_commit=False, autoflush=False)
        return self._session

    def on_commit(self, fn: Callback) -> None:
        """Run ``fn`` after the root transaction commits; never if it rolls back."""
        self._callbacks[-1].append(fn)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside rolls back only this block."""
        nested = self.session.begin_nested()
        # The session emits SAVEPOINT lazily, on its first statement; statements on the
        # driver connection (the PostgreSQL fast paths) do not go through it, so emit it now.
        self.session.connection()
        self._callbacks.append([])
        try:
            yield
        except BaseException:
            self._callbacks.pop()
            if nested.is_active:
                nested.rollback()
            raise
        queued = self._callbacks.pop()
        with translate_errors():
            nested.commit()
        self._callbacks[-1].extend(queued)

    def finish(self, failed: bool) -> None:
        try:
            if failed:
                if self._session is not None:
                    self._session.rollback()
                if self.connection is not None:
                    self._end_on_driver(commit=False)
                return
            self._require_committable()
            if self._session is not None:
                with translate_errors():
                    self._session.commit()
            if self.connection is not None:  # what the session did not commit
                self._end_on_driver(commit=True)  # (raises translated errors itself)
        finally:
            if self._session is not None:
                self._session.close()
            if self.connection is not None:
                self.connection.close()
        for fn in self._callbacks[0] if self._callbacks[0] else ():
            try:
                fn()
            except Exception:  # the data is committed; a failing callback must not hide that
                log.exception("on_commit callback %r failed", fn)

    def _require_committable(self) -> None:
        """Raise, before anything is committed, if this transaction cannot commit: its
        connection was lost, or PostgreSQL aborted it on an error the caller caught inside
        the block (a COMMIT would silently roll back, and callbacks would run for nothing)."""
        connection = self.connection
        if connection is None:
            return
        if connection.invalidated:
            raise DatabaseUnavailableError(
                "the unit of work lost its database connection: nothing was committed"
            )
        status = connection.connection.driver_connection.pgconn.transaction_status  # type: ignore[union-attr]
        if status == TransactionStatus.INERROR:
            raise DatabaseError(
                "the unit of work's transaction was aborted by an earlier error (caught inside "
                "the block): it was rolled back and nothing was committed",
                sqlstate="25P02",
            )

    def _end_on_driver(self, *, commit: bool) -> None:
        """COMMIT or ROLLBACK the server's transaction if it is still open."""
        connection = self.connection
        assert connection is not None
        if connection.invalidated or connection.closed:
            return
        driver: Any = connection.connection.driver_connection
        if driver.closed or driver.pgconn.transaction_status == TransactionStatus.IDLE:
            return
        try:
            simple_query(driver, b"COMMIT" if commit else b"ROLLBACK")
        except psycopg.Error as exc:
            raise_translated(connection, "COMMIT" if commit else "ROLLBACK", (), exc)


class UnitOfWork:
    """One transaction bound to one tenant and workspace.

    Leaving the ``with`` block without an exception commits; an exception rolls
    everything back. Repositories are reached as attributes (``uow.states`` ...).
    """

    def __init__(self, db: Database, tenant: str, workspace: str, *, read_only: bool = False):
        self._db = db
        self._tenant_slug = tenant
        self._workspace_slug = workspace
        self.read_only = read_only
        self._tx: _Transaction | None = None
        self._repos: dict[str, object] = {}
        self._entry: Mapping[Any, Any] | None = None
        self._tenant: TenantRecord | None = None
        self._workspace: WorkspaceRecord | None = None

    def __enter__(self) -> Self:
        db = self._db
        tx, entry = begin(self._open, self._enter, url=db.settings.url_label, engine=db.engine)
        self._tx = tx
        self._entry, self._tenant, self._workspace = entry, None, None
        tenant_id, workspace_id = entry_ids(entry)
        self.scope = Scope(
            transaction=tx,
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            settings=self._db.settings,
            dialect=self._db.dialect,
            on_commit=self._tx.on_commit,
            read_only=self.read_only,
        )
        return self

    def _open(self) -> _Transaction:
        if self._db.dialect == "postgresql":
            return _Transaction(connection=self._db.engine.connect())
        return _Transaction(session=self._db._runtime_sessions())

    def _enter(self, tx: _Transaction) -> Mapping[Any, Any]:
        return self._db._enter_scope(
            tx, self._tenant_slug, self._workspace_slug, read_only=self.read_only
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx, self._tx = self._require(), None
        self._repos.clear()
        tx.finish(failed=exc_type is not None)
        reraise_translated(exc, self._db.settings.url_label)

    @property
    def tenant(self) -> TenantRecord:
        """The tenant this unit of work is bound to (as it was when it began)."""
        if self._tenant is None:
            self._tenant = tenant_record(self._entered())
        return self._tenant

    @property
    def workspace(self) -> WorkspaceRecord:
        """The workspace this unit of work is bound to (as it was when it began)."""
        if self._workspace is None:
            self._workspace = workspace_record(self._entered())
        return self._workspace

    def _entered(self) -> Mapping[Any, Any]:
        if self._entry is None:
            raise PersistenceError("the unit of work has not begun: use it in a `with` block")
        return self._entry

    def _require(self) -> _Transaction:
        if self._tx is None:
            raise PersistenceError("the unit of work is not open: use it in a `with` block")
        return self._tx

    @property
    def session(self) -> Session:
        """The ORM session of this unit of work, for SQL of your own. Session state it
        leaves (``SET``, temporary tables, ...) is reset before the connection is reused."""
        tx = self._require()
        if tx.connection is not None:
            mark_dirty(tx.connection)
        return tx.session

    def savepoint(self) -> Any:
        """``with uow.savepoint():`` a nested transaction inside this unit of work."""
        return self._require().savepoint()

    def on_commit(self, fn: Callback) -> None:
        """Queue ``fn`` to run after this unit of work commits (dropped on rollback)."""
        self._require().on_commit(fn)

    def access(self) -> AccessDescriptor:
        """The access descriptor of this scope: JSON another process opens with
        ``Database.from_access`` (no password in it)."""
        self._require()
        return self._db.access(self.tenant.slug, self.workspace.slug)

    # -- repositories (built on first use, one per unit of work) -----------------

    @property
    def states(self) -> StateRepository:
        from persistence.repositories.states import StateRepository

        return self._repo("states", StateRepository)  # type: ignore[no-any-return]

    @property
    def workflows(self) -> WorkflowRepository:
        from persistence.repositories.workflows import WorkflowRepository

        return self._repo("workflows", WorkflowRepository)  # type: ignore[no-any-return]

    @property
    def artifacts(self) -> ArtifactRepository:
        from persistence.repositories.artifacts import ArtifactRepository

        return self._repo("artifacts", ArtifactRepository)  # type: ignore[no-any-return]

    @property
    def runs(self) -> RunRepository:
        from persistence.repositories.runs import RunRepository

        return self._repo("runs", RunRepository)  # type: ignore[no-any-return]

    def store(self, name: str) -> Store:
        """The key/value store ``name`` inside this unit of work's transaction."""
        from persistence.stores import Store

        self._require()
        return Store.for_unit_of_work(self, name)

    def list_stores(self, *, limit: int = 100, cursor: str | None = None) -> Page[StoreRecord]:
        """The workspace's stores ordered by name, one page at a time."""
        from persistence.repositories.stores import StoreRepository

        return StoreRepository(self._scope()).list_stores(limit=limit, cursor=cursor)

    def delete_store(self, name: str) -> None:
        """Delete the store and its items; NotFoundError if it does not exist."""
        from persistence.repositories.stores import StoreRepository

        with translate_errors():
            StoreRepository(self._scope()).delete_store(name)

    def _scope(self) -> Scope:
        self._require()
        return self.scope

    def _repo(self, name: str, factory: Callable[[Scope], object]) -> Any:
        self._require()
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = factory(self.scope)
        return repo


class AdminUnitOfWork:
    """Tenant administration in one transaction, as the owner role (not tenant-scoped)."""

    tenants: TenantRepository
    workspaces: WorkspaceRepository

    def __init__(self, db: Database):
        self._db = db
        self._tx: _Transaction | None = None

    def __enter__(self) -> Self:
        db = self._db
        self._tx, _ = begin(self._open, self._check, url=self._url, engine=db.owner_engine)
        session = self._tx.session
        self.tenants = TenantRepository(session)
        self.workspaces = WorkspaceRepository(session)
        return self

    def _open(self) -> _Transaction:
        session = self._db._owner_sessions()
        if self._db.dialect == "postgresql":
            try:
                session.connection()  # checked out now, so that _check can begin on it
            except BaseException:
                session.close()
                raise
        return _Transaction(session=session)

    def _check(self, tx: _Transaction) -> None:
        if self._db.dialect == "postgresql":
            enter_admin(tx.session.connection(), self._url())

    def _url(self) -> str:
        return self._db.settings.url_label(owner=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            tx.finish(failed=exc_type is not None)
        reraise_translated(exc, self._url)

    def on_commit(self, fn: Callback) -> None:
        if self._tx is None:
            raise PersistenceError("the admin unit of work is not open")
        self._tx.on_commit(fn)
