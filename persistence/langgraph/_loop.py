"""The sync methods of the async adapters: LangGraph calls them from other threads (a
sync ``get_state`` on a graph compiled with an async saver); they run on the event loop
the adapter was first used on, as LangGraph's own async savers do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from persistence.errors import ConfigurationError

__all__ = ["LoopBound"]


class LoopBound:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def seen(self) -> None:
        """Remember the running loop (called by every async method)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the remembered loop from another thread and wait for it."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.get_ident() == self._thread:
            coro.close()
            raise ConfigurationError(
                f"{self._name}'s sync methods run on its event loop from another thread "
                "only: await its async methods, or use the sync class on a Database"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
