"""The sync Store's ``MutableMapping`` protocol, and its empty asyncio twin.

``persistence/stores_async.py`` declares ``class AsyncStore(AsyncMappingMixin)``, which
the generated ``persistence/stores.py`` reads as ``class Store(MappingMixin)``. Python
has no awaited ``store[key]`` or ``len(store)``, so the asyncio store has its awaited
methods only (``await store.get(key)``, ``await store.count()``, ``async for key in
store.keys()``); the sync store is also a mapping, its dunders and views delegating to
the same methods here, with no logic of their own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from typing import Any

from persistence.repositories._store_statements import MISSING

__all__ = ["AsyncMappingMixin", "MappingMixin"]


class AsyncMappingMixin:
    """Nothing to add: an asyncio store is not a ``Mapping``."""


class MappingMixin(MutableMapping[str, Any]):
    """``store[key]``, ``store[key] = value``, ``del store[key]``, ``len(store)``,
    ``key in store``, iteration and the ``keys()``/``items()``/``values()`` views, on the
    methods of the generated Store (each operation its own query)."""

    @abstractmethod
    def set(self, key: str, value: Any) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def contains(self, key: object) -> bool: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def _iter_keys(self) -> Iterator[str]: ...

    @abstractmethod
    def _iter_items(self) -> Iterator[tuple[str, Any]]: ...

    @abstractmethod
    def _iter_values(self) -> Iterator[Any]: ...

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return self.contains(key)

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[str]:
        return self._iter_keys()

    def items(self) -> _ItemsView:
        return _ItemsView(self)

    def values(self) -> _ValuesView:
        return _ValuesView(self)


class _ItemsView(ItemsView[str, Any]):
    """Items read in pages (one query per 500 items, not one per key)."""

    _mapping: MappingMixin

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self._mapping._iter_items()


class _ValuesView(ValuesView[Any]):
    _mapping: MappingMixin

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter_values()
