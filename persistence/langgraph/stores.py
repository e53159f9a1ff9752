"""LangGraph's store on persistence: :class:`PersistenceStore` on a
:class:`~persistence.Database`, :class:`AsyncPersistenceStore` on an
:class:`~persistence.AsyncDatabase`. One tenant's items, in ``lg_store_items``.

Why a table of its own rather than the key/value stores of :mod:`persistence.stores`:
LangGraph's store addresses items by a namespace path and filters them by the members
of their JSON values (``{"score": {"$gt": 4}}``), across namespaces, with a TTL per
item; our stores hold one opaque, compressed value per key of one named store. The
table keeps the value as JSON text (checksummed, exactly as written) so the database
can filter on it. See docs/langgraph.md."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from langgraph.store.base import BaseStore, InvalidNamespaceError, Op, Result, TTLConfig

from persistence.errors import ConfigurationError, PersistenceError
from persistence.langgraph._loop import LoopBound
from persistence.langgraph._store import StoreCore
from persistence.langgraph._store_async import AsyncStoreCore, NamespaceError
from persistence.validation import validate_slug

if TYPE_CHECKING:
    from persistence.database import Database
    from persistence.database_async import AsyncDatabase

__all__ = ["AsyncPersistenceStore", "PersistenceStore"]


def _ours(method: Any) -> Any:
    """``BaseStore``'s ``method``, raising the persistence error for a namespace it
    refuses itself (``get``/``put``/``search`` check labels before ``batch`` runs)."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def awaited(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            except InvalidNamespaceError as exc:
                if isinstance(exc, PersistenceError):
                    raise
                raise NamespaceError(str(exc)) from None

        return awaited

    @functools.wraps(method)
    def called(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except InvalidNamespaceError as exc:
            if isinstance(exc, PersistenceError):
                raise
            raise NamespaceError(str(exc)) from None

    return called


class _Translated(BaseStore):
    """The public methods of ``BaseStore``, every namespace error a persistence one."""

    get = _ours(BaseStore.get)
    put = _ours(BaseStore.put)
    delete = _ours(BaseStore.delete)
    search = _ours(BaseStore.search)
    list_namespaces = _ours(BaseStore.list_namespaces)
    aget = _ours(BaseStore.aget)
    aput = _ours(BaseStore.aput)
    adelete = _ours(BaseStore.adelete)
    asearch = _ours(BaseStore.asearch)
    alist_namespaces = _ours(BaseStore.alist_namespaces)


def _check(index: Any, ttl: TTLConfig | None) -> TTLConfig:
    if index is not None:
        raise ConfigurationError(
            "vector search (index=) is not supported by the persistence store: leave "
            "index unset and search with filter="
        )
    return TTLConfig(**(ttl or {}))


def _interval(ttl: TTLConfig, minutes: float | None) -> float:
    chosen = minutes if minutes is not None else ttl.get("sweep_interval_minutes")
    if chosen is None or chosen <= 0:
        raise ConfigurationError(
            "the TTL sweeper needs an interval: ttl={'sweep_interval_minutes': N} or "
            "start_ttl_sweeper(N)"
        )
    return float(chosen) * 60


class PersistenceStore(_Translated):
    """LangGraph's ``BaseStore`` for one tenant: ``get``/``put``/``delete``/``search``/
    ``list_namespaces`` and ``batch``, each batch one transaction. ``ttl``: LangGraph's
    ``TTLConfig`` (``default_ttl`` minutes, ``refresh_on_read``,
    ``sweep_interval_minutes``); an expired item is never returned, and
    :meth:`sweep_ttl` (or ``persistence gc``) deletes it."""

    supports_ttl = True

    def __init__(
        self, db: Database, *, tenant: str, ttl: TTLConfig | None = None, index: Any = None
    ):
        self.ttl_config = self._ttl = _check(index, ttl)
        self._core = StoreCore(
            db,
            validate_slug(tenant, what="tenant slug"),
            refresh_on_read=self._ttl.get("refresh_on_read", True),
        )
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._core.batch(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self._core.batch, list(ops))

    def sweep_ttl(self) -> int:
        """Delete the tenant's expired items now; how many were deleted."""
        return self._core.sweep()

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> None:
        """Sweep every interval on a daemon thread until :meth:`stop_ttl_sweeper`."""
        interval = _interval(self._ttl, sweep_interval_minutes)
        if self._sweeper is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                self._core.sweep()

        self._sweeper = threading.Thread(target=loop, name="persistence-ttl", daemon=True)
        self._sweeper.start()

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; whether it stopped within ``timeout`` seconds."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is None:
            return True
        self._stop.set()
        sweeper.join(timeout)
        return not sweeper.is_alive()


class AsyncPersistenceStore(_Translated):
    """:class:`PersistenceStore` on an :class:`~persistence.AsyncDatabase`, ``abatch``
    native; ``batch`` runs on its event loop from another thread only."""

    supports_ttl = True

    def __init__(
        self, db: AsyncDatabase, *, tenant: str, ttl: TTLConfig | None = None, index: Any = None
    ):
        self.ttl_config = self._ttl = _check(index, ttl)
        self._core = AsyncStoreCore(
            db,
            validate_slug(tenant, what="tenant slug"),
            refresh_on_read=self._ttl.get("refresh_on_read", True),
        )
        self._bound = LoopBound("AsyncPersistenceStore")
        self._sweeper: asyncio.Task[None] | None = None

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        self._bound.seen()
        return await self._core.batch(ops)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._bound.call(self.abatch(list(ops)))  # type: ignore[no-any-return]

    async def sweep_ttl(self) -> int:
        """Delete the tenant's expired items now; how many were deleted."""
        return await self._core.sweep()

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> asyncio.Task[None]:
        """Sweep every interval in a task of the running loop until :meth:`stop_ttl_sweeper`."""
        interval = _interval(self._ttl, sweep_interval_minutes)
        if self._sweeper is None or self._sweeper.done():

            async def loop() -> None:
                while True:
                    await asyncio.sleep(interval)
                    await self._core.sweep()

            self._sweeper = asyncio.get_running_loop().create_task(loop())
        return self._sweeper

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Cancel the sweeper task; whether it ended within ``timeout`` seconds."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is None:
            return True
        sweeper.cancel()
        done, _ = await asyncio.wait({sweeper}, timeout=timeout)
        return bool(done)
