"""What every tenant-scoped repository is given: the bound scope of one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from persistence._compiled import Row, Statement
from persistence._executor_async import execute, sync_of
from persistence._session_reset import mark_dirty
from persistence.errors import PersistenceError, ReadOnlyError
from persistence.settings import Settings

if TYPE_CHECKING:
    from persistence._cache_front_async import AsyncReadCache
    from persistence.cache import Entry, Kind

__all__ = ["AsyncScope"]


class _Transaction(Protocol):
    @property
    def session(self) -> AsyncSession: ...

    connection: AsyncConnection
    written: set[str]
    committed: bool  # by a last statement that carried the COMMIT

    @property
    def pending(self) -> object | None: ...

    async def run(
        self, statement: Statement, params: Mapping[str, Any], *, last: bool = False
    ) -> list[Row]: ...

    async def connected(self) -> AsyncConnection: ...


@dataclass(frozen=True, slots=True)
class AsyncScope:
    """One tenant + workspace inside one transaction.

    Repositories filter every query by ``tenant_id`` (and ``workspace_id`` where the
    table has it) and never commit: the unit of work owns the transaction. Their
    statements run on ``connection`` through :mod:`persistence._executor`; ``session``
    (an ORM session bound to that connection) is built on first use.
    """

    transaction: _Transaction
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID
    settings: Settings
    dialect: str
    on_commit: Callable[[Callable[[], Any]], None]
    read_only: bool = False
    cache: AsyncReadCache | None = None
    """The read cache (docs/cache.md); None when off, and in a read-only unit of work
    (it reads its snapshot)."""

    @property
    def session(self) -> AsyncSession:
        """The unit of work's ORM session, for statements of a repository of your own;
        session state they leave is reset before the connection is reused."""
        mark_dirty(sync_of(self.transaction.connection))
        return self.transaction.session

    @property
    def connection(self) -> AsyncConnection:
        """The transaction's connection, for code that has sent a statement already:
        before the first, ``await scope.connected()`` (it sends the tenant entry). For
        statements that leave no session state (the library's own); SQL of your own
        goes through :attr:`session`, whose connection is reset before it is reused."""
        transaction = self.transaction
        if transaction.pending is not None:
            raise PersistenceError(
                "the unit of work has not sent its tenant entry yet: use "
                "`await scope.connected()` (or scope.run / scope.execute) for the first statement"
            )
        return transaction.connection

    async def connected(self) -> AsyncConnection:
        """The transaction's connection, the tenant entry sent (``persistence._deferred``)."""
        return await self.transaction.connected()

    async def run(
        self, statement: Statement, params: Mapping[str, Any], *, last: bool = False
    ) -> list[Row]:
        """Run ``statement`` (``persistence._executor.run``) in this transaction; the
        first statement of a unit of work carries its ``BEGIN`` and tenant entry.
        ``last``: the unit of work's last statement, which may carry its ``COMMIT``
        (see ``persistence.uow``'s transaction ``run``): nothing more may run after it."""
        return await self.transaction.run(statement, params, last=last)

    async def run_one(
        self, statement: Statement, params: Mapping[str, Any], *, last: bool = False
    ) -> Row:
        """The first row of :meth:`run`, or ``None``."""
        found = await self.transaction.run(statement, params, last=last)
        return found[0] if found else None

    async def run_scalar(
        self, statement: Statement, params: Mapping[str, Any], *, last: bool = False
    ) -> Any:
        """The first column of the first row of :meth:`run`, or ``None``."""
        found = await self.transaction.run(statement, params, last=last)
        return found[0][0] if found else None

    async def execute(self, clause: Any, params: Mapping[str, Any] | None = None) -> list[Row]:
        """A statement built per call (``persistence._executor.execute``)."""
        return await execute(await self.transaction.connected(), clause, params)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def cache_for(self, *keys: str) -> AsyncReadCache | None:
        """The read cache, if ``keys`` may be read through it here: not when it is off or
        the unit of work read-only, nor once this unit of work wrote (or locked) one of
        them: it reads its own uncommitted write, or under its lock."""
        cache = self.cache
        if cache is None:
            return None
        written = self.transaction.written
        if written and any(key in written for key in keys):
            return None
        return cache

    def cache_bypass(self, key: str) -> None:
        """Read ``key`` from the database for the rest of this unit of work."""
        self.transaction.written.add(key)

    def cache_tenant_changed(self) -> None:
        """After this unit of work commits, nothing of its tenant cached before is served
        (a write too wide to name its keys: a store cleared or deleted)."""
        cache = self.cache
        if cache is not None:
            tenant_id = self.tenant_id
            self.on_commit(lambda: cache.tenant_changed(tenant_id))

    def cache_written(self, kind: Kind, key: str, entry: Entry | None, floor: int) -> None:
        """This unit of work wrote ``key``: after it commits, ``entry`` is what it holds
        (None: nothing below version ``floor`` may be served); a rollback does nothing."""
        cache = self.cache
        if cache is None:
            return
        self.transaction.written.add(key)
        tenant_id = self.tenant_id
        self.on_commit(lambda: cache.committed(tenant_id, kind, key, entry, floor))

    def require_writable(self, what: str) -> None:
        """Raise ReadOnlyError if this unit of work is read-only.

        Each repository's write paths call it before their first statement: the database
        would refuse the write too (SQLSTATE 25006), but on PostgreSQL the refusal aborts
        the transaction, and the unit of work's later reads would fail. It also covers a
        write method that can end without sending a write (an identical import, an
        unchanged save, a value already stored), so the outcome never depends on the data.
        """
        if self.read_only:
            raise ReadOnlyError(f"this unit of work is read-only: {what}() is a write method")
