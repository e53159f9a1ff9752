"""Key/value stores: named stores of JSON values, with transactions and locking.

``db.store(tenant=..., name=...)`` runs each operation in its own transaction;
``uow.store(name)`` runs them in the unit of work's transaction. Keys iterate in
Unicode code point order (``sorted(store) == list(store)``).

The sync ``Store`` is a ``MutableMapping`` (``store[key]``, ``del store[key]``,
``len(store)``, ``key in store``, the ``keys()``/``items()``/``values()`` views: see
:mod:`persistence._store_mapping`) and also has ``set``, ``delete``, ``contains`` and
``count``. The asyncio ``AsyncStore`` has the same operations, awaited: ``await
store.set(key, value)``, ``await store.get(key, default)``, ``await store.count()``,
``async for key in store.keys()``, ``async with store.transaction(lock=True):``.
"""

from __future__ import annotations

import asyncio  # sync: import threading
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from persistence._store_mapping import AsyncMappingMixin
from persistence.codecs import dump_json
from persistence.errors import InvalidInputError, InvalidTypeError, ReadOnlyError
from persistence.fencing_async import as_fence_token, check_fence
from persistence.repositories.stores_async import MISSING, AsyncStoreRepository
from persistence.validation import validate_slug, validate_text

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase
    from persistence.settings import Settings
    from persistence.uow_async import AsyncUnitOfWork

__all__ = ["MAX_KEY_LENGTH", "AsyncStore", "validate_key"]

MAX_KEY_LENGTH = 1024
_PAGE = 500
_Items = AsyncIterator[tuple[str, Any]]  # (key, value) pairs


def validate_key(key: object) -> str:
    """Return ``key`` if it is a str of 1-1024 characters without NUL or lone surrogates.

    Raises InvalidTypeError (a TypeError) for a non-str, InvalidInputError otherwise.
    """
    return validate_text(key, "store key", max_length=MAX_KEY_LENGTH)


class _Runner(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def read_only(self) -> bool: ...

    def op(self) -> AbstractAsyncContextManager[AsyncStoreRepository]: ...

    def transaction(self, name: str, lock: bool) -> AbstractAsyncContextManager[None]: ...


def _caller() -> object:
    """Whose open ``transaction()`` an operation joins: its task's (its thread's, on the
    sync API). A task started inside the block does not join it, as a thread does not."""
    return asyncio.current_task()  # sync: return threading.get_ident()


class _DatabaseRunner:
    """Each operation in its own unit of work, unless a ``transaction()`` is open in
    this task (thread), which then carries every operation until it ends."""

    def __init__(self, db: AsyncDatabase, tenant: str, workspace: str):
        self._db = db
        self._tenant = tenant
        self._workspace = workspace
        # per task (thread): the open unit of work, and the store rows it has locked
        self._open: dict[object, tuple[AsyncUnitOfWork, set[str]]] = {}

    @property
    def settings(self) -> Settings:
        return self._db.settings

    read_only = False  # its units of work are never read-only

    @asynccontextmanager
    async def op(self) -> AsyncIterator[AsyncStoreRepository]:
        joined = self._open.get(_caller())
        if joined is not None:
            uow, known = joined
            yield AsyncStoreRepository(uow.scope, known)
            return
        async with self._db.unit_of_work(self._tenant, self._workspace) as uow:
            yield AsyncStoreRepository(uow.scope)

    @asynccontextmanager
    async def transaction(self, name: str, lock: bool) -> AsyncIterator[None]:
        caller = _caller()
        joined = self._open.get(caller)
        if joined is not None:  # nested: a savepoint inside the open transaction
            uow = joined[0]
            async with uow.savepoint():
                if lock:
                    await AsyncStoreRepository(uow.scope).lock(name)
                yield
            return
        async with self._db.unit_of_work(self._tenant, self._workspace) as uow:
            known: set[str] = set()
            self._open[caller] = (uow, known)
            try:
                if lock:  # at the root: no savepoint can undo the row it creates
                    await AsyncStoreRepository(uow.scope, known).lock(name)
                yield
            finally:
                del self._open[caller]


class _UnitOfWorkRunner:
    """Every operation in the unit of work's transaction; ``transaction()`` is a savepoint."""

    def __init__(self, uow: AsyncUnitOfWork):
        self._uow = uow

    @property
    def settings(self) -> Settings:
        return self._uow.scope.settings

    @property
    def read_only(self) -> bool:
        return self._uow.read_only

    @asynccontextmanager
    async def op(self) -> AsyncIterator[AsyncStoreRepository]:
        # Raises PersistenceError once the unit of work ended. Not ``uow.session``: that
        # would build the session, which the PostgreSQL item paths do not need.
        self._uow._require()
        yield AsyncStoreRepository(self._uow.scope)

    @asynccontextmanager
    async def transaction(self, name: str, lock: bool) -> AsyncIterator[None]:
        async with self._uow.savepoint():
            if lock:
                await AsyncStoreRepository(self._uow.scope).lock(name)
            yield


class AsyncStore(AsyncMappingMixin):
    """A named dict-like store of JSON values in one workspace.

    Keys are str (1-1024 characters); values are JSON (dict with str keys, list, str,
    int, finite float, bool, None) and round-trip exactly. Bad keys or values raise
    InvalidInputError (InvalidTypeError, also a TypeError, for wrong types) before
    anything is written. Iteration, ``keys()``, ``values()`` and ``items()`` go in
    code point order of the keys, reading pages of 500 keys.
    """

    def __init__(self, runner: _Runner, name: str, fence: object | None = None):
        self._runner = runner
        self.name = validate_slug(name, what="store name")
        self._fence = fence  # a lease (its token read at each write) or a FenceToken

    @classmethod
    def for_database(cls, db: AsyncDatabase, tenant: str, workspace: str, name: str) -> AsyncStore:
        validate_slug(tenant, what="tenant slug")
        validate_slug(workspace, what="workspace slug")
        return cls(_DatabaseRunner(db, tenant, workspace), name)

    @classmethod
    def for_unit_of_work(cls, uow: AsyncUnitOfWork, name: str) -> AsyncStore:
        return cls(_UnitOfWorkRunner(uow), name)

    def __repr__(self) -> str:
        fenced = f", fence={as_fence_token(self._fence).fence}" if self._fence else ""
        return f"<{type(self).__name__} {self.name!r}{fenced}>"

    # -- transactions and fencing ----------------------------------------------------

    def transaction(self, lock: bool = False) -> AbstractAsyncContextManager[AsyncStore]:
        """``with store.transaction():`` the operations inside commit together or not at all.

        An exception rolls them back and propagates. ``lock=True`` also excludes every
        other ``lock=True`` transaction on this store, in any process (a row lock on
        PostgreSQL; SQLite transactions are exclusive already). A nested block is a
        savepoint of the open transaction. On the asyncio API: ``async with``, and the
        block carries the operations of its own task only.
        """
        return self._transaction(bool(lock))

    @asynccontextmanager
    async def _transaction(self, lock: bool) -> AsyncIterator[AsyncStore]:
        async with self._runner.transaction(self.name, lock):
            yield self

    def fenced(self, lease: object) -> AsyncStore:
        """This store, with every write checked against ``lease``'s fence.

        A write raises StaleFenceError and writes nothing once the lease has expired,
        was released or taken over, or a newer holder has written (the lease's token is
        read at each write: an ``extend`` counts).
        """
        as_fence_token(lease)  # (refused now if it is not one)
        return AsyncStore(self._runner, self.name, lease)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncStoreRepository]:
        """Every write goes through here: refused in a read-only unit of work before any
        statement, also by the writes that would send none (``update()`` of nothing,
        ``setdefault`` of a present key); then the fence check."""
        async with self._runner.op() as repo:
            if self._runner.read_only:
                raise ReadOnlyError(
                    f"this unit of work is read-only: it cannot write store {self.name!r}"
                )
            await check_fence(repo.scope, self._fence)
            yield repo

    def _encode(self, key: object, value: object) -> tuple[str, bytes]:
        key = validate_key(key)
        settings = self._runner.settings
        raw = dump_json(
            value, what=f"store value for key {key!r}", max_depth=settings.max_json_depth
        )
        limit = settings.max_store_value_bytes
        if len(raw) > limit:
            raise InvalidInputError(
                f"the value for key {key!r} is {len(raw)} bytes of JSON; the limit is {limit}"
            )
        return key, raw

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is absent."""
        validate_key(key)
        async with self._runner.op() as repo:
            value = await repo.get(self.name, key)
        return default if value is MISSING else value

    async def contains(self, key: object) -> bool:
        """Whether ``key`` is in the store (``key in store``)."""
        checked = validate_key(key)
        async with self._runner.op() as repo:
            return await repo.contains(self.name, checked)

    async def count(self) -> int:
        """The number of keys (``len(store)``)."""
        async with self._runner.op() as repo:
            return await repo.count(self.name)

    # Each page is read in an operation of its own and none is open while the caller
    # holds a page: an iteration abandoned halfway holds no connection.

    async def keys(self) -> AsyncIterator[str]:  # sync: def _iter_keys(self) -> Iterator[str]:
        """The keys in code point order: ``iter(store)`` on the sync API, ``async for key in
        store.keys()`` on the asyncio API."""
        after: str | None = None
        while True:
            async with self._runner.op() as repo:
                keys = await repo.keys_after(self.name, after, _PAGE)
            for key in keys:  # sync: yield from keys
                yield key  # sync:
            if len(keys) < _PAGE:
                return
            after = keys[-1]

    async def items(self) -> _Items:  # sync: def _iter_items(self) -> _Items:
        """The (key, value) pairs in code point order of the keys."""
        after: str | None = None
        while True:
            async with self._runner.op() as repo:
                items = await repo.items_after(self.name, after, _PAGE)
            for item in items:  # sync: yield from items
                yield item  # sync:
            if len(items) < _PAGE:
                return
            after = items[-1][0]

    async def values(self) -> AsyncIterator[Any]:  # sync: def _iter_values(self) -> Iterator[Any]:
        """The values in code point order of their keys."""
        async for _, value in self.items():  # sync: for _, value in self._iter_items():
            yield value

    # -- writes ----------------------------------------------------------------------

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (``store[key] = value``)."""
        pair = self._encode(key, value)
        async with self._writing() as repo:
            await repo.put_many(self.name, [pair])

    async def delete(self, key: str) -> None:
        """Remove ``key``; KeyError when it is absent (``del store[key]``)."""
        if await self.pop(key, MISSING) is MISSING:
            raise KeyError(key)

    async def pop(self, key: str, default: Any = MISSING) -> Any:
        validate_key(key)
        async with self._writing() as repo:
            value = await repo.remove(self.name, key)
        if value is not MISSING:
            return value
        if default is MISSING:
            raise KeyError(key)
        return default

    async def popitem(self) -> tuple[str, Any]:
        """Remove and return the item with the smallest key; KeyError when empty."""
        async with self._writing() as repo:
            item = await repo.remove_first(self.name)
        if item is None:
            raise KeyError("popitem(): store is empty")
        return item

    async def setdefault(self, key: str, default: Any = None) -> Any:
        pair = self._encode(key, default)
        async with self._writing() as repo:
            value = await repo.get(self.name, pair[0])
            if value is MISSING:
                await repo.put_many(self.name, [pair])
                return default
        return value

    async def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set many keys in one transaction; every key and value is checked first."""
        pending: dict[str, bytes] = {}
        for key, value in [*_pairs(other), *kwargs.items()]:
            key, raw = self._encode(key, value)
            pending[key] = raw
        async with self._writing() as repo:
            await repo.put_many(self.name, list(pending.items()))

    async def clear(self) -> None:
        async with self._writing() as repo:
            await repo.clear(self.name)


def _pairs(other: object) -> list[tuple[Any, Any]]:
    """The (key, value) pairs of ``update``'s argument, as ``dict.update`` reads them;
    InvalidTypeError when it is neither a mapping nor an iterable of pairs."""
    if isinstance(other, Mapping):
        return list(other.items())
    if hasattr(other, "keys"):
        return [(k, other[k]) for k in other.keys()]  # type: ignore[index]  # noqa: SIM118
    if isinstance(other, str | bytes) or not isinstance(other, Iterable):
        raise InvalidTypeError(f"update() needs a mapping or pairs, not {type(other).__name__}")
    pairs = []
    for item in other:
        if isinstance(item, str | bytes) or not isinstance(item, Iterable):
            raise InvalidTypeError(f"update() pairs must be (key, value), not {item!r:.60}")
        pair = tuple(item)
        if len(pair) != 2:
            raise InvalidInputError(f"update() pairs must be (key, value), not {len(pair)} items")
        pairs.append(pair)
    return pairs
