"""Key/value stores: a ``MutableMapping`` of JSON values, with transactions and locking.

``db.store(tenant=..., name=...)`` runs each operation in its own transaction;
``uow.store(name)`` runs them in the unit of work's transaction. Keys iterate in
Unicode code point order (``sorted(store) == list(store)``).
"""

from __future__ import annotations

import threading
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from persistence.codecs import dump_json
from persistence.errors import InvalidInputError, InvalidTypeError, ReadOnlyError
from persistence.fencing import FenceToken, as_fence_token, check_fence
from persistence.repositories.stores import MISSING, StoreRepository
from persistence.validation import validate_slug, validate_text

if TYPE_CHECKING:
    from persistence.database import Database
    from persistence.settings import Settings
    from persistence.uow import UnitOfWork

__all__ = ["MAX_KEY_LENGTH", "Store", "validate_key"]

MAX_KEY_LENGTH = 1024
_PAGE = 500


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

    def op(self) -> AbstractContextManager[StoreRepository]: ...

    def transaction(self, name: str, lock: bool) -> AbstractContextManager[None]: ...


class _DatabaseRunner:
    """Each operation in its own unit of work, unless a ``transaction()`` is open in
    this thread, which then carries every operation until it ends."""

    def __init__(self, db: Database, tenant: str, workspace: str):
        self._db = db
        self._tenant = tenant
        self._workspace = workspace
        self._local = threading.local()

    @property
    def settings(self) -> Settings:
        return self._db.settings

    read_only = False  # its units of work are never read-only

    def _open(self) -> UnitOfWork | None:
        return getattr(self._local, "uow", None)

    @contextmanager
    def op(self) -> Iterator[StoreRepository]:
        uow = self._open()
        if uow is not None:
            yield StoreRepository(uow.scope, self._local.known)
            return
        with self._db.unit_of_work(self._tenant, self._workspace) as uow:
            yield StoreRepository(uow.scope)

    @contextmanager
    def transaction(self, name: str, lock: bool) -> Iterator[None]:
        uow = self._open()
        if uow is not None:  # nested: a savepoint inside the open transaction
            with uow.savepoint():
                if lock:
                    StoreRepository(uow.scope).lock(name)
                yield
            return
        with self._db.unit_of_work(self._tenant, self._workspace) as uow:
            self._local.uow, self._local.known = uow, set()
            try:
                if lock:  # at the root: no savepoint can undo the row it creates
                    StoreRepository(uow.scope, self._local.known).lock(name)
                yield
            finally:
                self._local.uow = self._local.known = None


class _UnitOfWorkRunner:
    """Every operation in the unit of work's transaction; ``transaction()`` is a savepoint."""

    def __init__(self, uow: UnitOfWork):
        self._uow = uow

    @property
    def settings(self) -> Settings:
        return self._uow.scope.settings

    @property
    def read_only(self) -> bool:
        return self._uow.read_only

    @contextmanager
    def op(self) -> Iterator[StoreRepository]:
        # Raises PersistenceError once the unit of work ended. Not ``uow.session``: that
        # would build the session, which the PostgreSQL item paths do not need.
        self._uow._require()
        yield StoreRepository(self._uow.scope)

    @contextmanager
    def transaction(self, name: str, lock: bool) -> Iterator[None]:
        with self._uow.savepoint():
            if lock:
                StoreRepository(self._uow.scope).lock(name)
            yield


class Store(MutableMapping[str, Any]):
    """A named dict-like store of JSON values in one workspace.

    Keys are str (1-1024 characters); values are JSON (dict with str keys, list, str,
    int, finite float, bool, None) and round-trip exactly. Bad keys or values raise
    InvalidInputError (InvalidTypeError, also a TypeError, for wrong types) before
    anything is written. Iteration, ``keys()``, ``values()`` and ``items()`` go in
    code point order of the keys, reading pages of 500 keys.
    """

    def __init__(self, runner: _Runner, name: str, fence: FenceToken | None = None):
        self._runner = runner
        self.name = validate_slug(name, what="store name")
        self._fence = fence

    @classmethod
    def for_database(cls, db: Database, tenant: str, workspace: str, name: str) -> Store:
        validate_slug(tenant, what="tenant slug")
        validate_slug(workspace, what="workspace slug")
        return cls(_DatabaseRunner(db, tenant, workspace), name)

    @classmethod
    def for_unit_of_work(cls, uow: UnitOfWork, name: str) -> Store:
        return cls(_UnitOfWorkRunner(uow), name)

    def __repr__(self) -> str:
        fenced = f", fence={self._fence.fence}" if self._fence else ""
        return f"<Store {self.name!r}{fenced}>"

    # -- transactions and fencing ----------------------------------------------------

    def transaction(self, lock: bool = False) -> AbstractContextManager[Store]:
        """``with store.transaction():`` the operations inside commit together or not at all.

        An exception rolls them back and propagates. ``lock=True`` also excludes every
        other ``lock=True`` transaction on this store, in any process (a row lock on
        PostgreSQL; SQLite transactions are exclusive already). A nested block is a
        savepoint of the open transaction.
        """
        return self._transaction(bool(lock))

    @contextmanager
    def _transaction(self, lock: bool) -> Iterator[Store]:
        with self._runner.transaction(self.name, lock):
            yield self

    def fenced(self, lease: object) -> Store:
        """This store, with every write checked against ``lease``'s fence.

        A write whose fence is lower than one already written for the lease's name (by
        a newer holder) raises StaleFenceError and writes nothing.
        """
        return Store(self._runner, self.name, as_fence_token(lease))

    @contextmanager
    def _writing(self) -> Iterator[StoreRepository]:
        """Every write goes through here: refused in a read-only unit of work before any
        statement, also by the writes that would send none (``update()`` of nothing,
        ``setdefault`` of a present key); then the fence check."""
        with self._runner.op() as repo:
            if self._runner.read_only:
                raise ReadOnlyError(
                    f"this unit of work is read-only: it cannot write store {self.name!r}"
                )
            check_fence(repo.scope, self._fence)
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

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        validate_key(key)
        with self._runner.op() as repo:
            value = repo.get(self.name, key)
        return default if value is MISSING else value

    def __contains__(self, key: object) -> bool:
        checked = validate_key(key)
        with self._runner.op() as repo:
            return repo.contains(self.name, checked)

    def __len__(self) -> int:
        with self._runner.op() as repo:
            return repo.count(self.name)

    def __iter__(self) -> Iterator[str]:
        after: str | None = None
        while True:
            with self._runner.op() as repo:
                keys = repo.keys_after(self.name, after, _PAGE)
            yield from keys
            if len(keys) < _PAGE:
                return
            after = keys[-1]

    def _iter_items(self) -> Iterator[tuple[str, Any]]:
        after: str | None = None
        while True:
            with self._runner.op() as repo:
                items = repo.items_after(self.name, after, _PAGE)
            yield from items
            if len(items) < _PAGE:
                return
            after = items[-1][0]

    def items(self) -> _ItemsView:
        return _ItemsView(self)

    def values(self) -> _ValuesView:
        return _ValuesView(self)

    # -- writes ----------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        pair = self._encode(key, value)
        with self._writing() as repo:
            repo.put_many(self.name, [pair])

    def __delitem__(self, key: str) -> None:
        if self.pop(key, MISSING) is MISSING:
            raise KeyError(key)

    def pop(self, key: str, default: Any = MISSING) -> Any:
        validate_key(key)
        with self._writing() as repo:
            value = repo.remove(self.name, key)
        if value is not MISSING:
            return value
        if default is MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the item with the smallest key; KeyError when empty."""
        with self._writing() as repo:
            item = repo.remove_first(self.name)
        if item is None:
            raise KeyError("popitem(): store is empty")
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        pair = self._encode(key, default)
        with self._writing() as repo:
            value = repo.get(self.name, pair[0])
            if value is MISSING:
                repo.put_many(self.name, [pair])
                return default
        return value

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set many keys in one transaction; every key and value is checked first."""
        pending: dict[str, bytes] = {}
        for key, value in [*_pairs(other), *kwargs.items()]:
            key, raw = self._encode(key, value)
            pending[key] = raw
        with self._writing() as repo:
            repo.put_many(self.name, list(pending.items()))

    def clear(self) -> None:
        with self._writing() as repo:
            repo.clear(self.name)


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


class _ItemsView(ItemsView[str, Any]):
    """Items read in pages (one query per 500 items, not one per key)."""

    _mapping: Store

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self._mapping._iter_items()


class _ValuesView(ValuesView[Any]):
    _mapping: Store

    def __iter__(self) -> Iterator[Any]:
        return (value for _, value in self._mapping._iter_items())
