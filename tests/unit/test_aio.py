"""The asyncio cleanups that outlive their cancelled callers (persistence._aio)."""

from __future__ import annotations

import asyncio
import threading

from persistence import _aio


def test_drain_waits_for_its_own_loops_cleanups_and_not_another_loops() -> None:
    """AsyncDatabase.close() drains the cleanups of its loop; one still running on
    another loop (another thread's AsyncDatabase) is not its to await, and used to make
    it raise RuntimeError ("attached to a different loop")."""
    release, done = threading.Event(), []

    async def held_elsewhere() -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)

    async def mine() -> None:
        await asyncio.sleep(0.05)
        done.append(True)

    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()

    async def start_elsewhere() -> None:
        _aio.in_background(held_elsewhere())

    asyncio.run_coroutine_threadsafe(start_elsewhere(), other).result(5)
    try:

        async def main() -> None:
            _aio.in_background(mine())
            await asyncio.wait_for(_aio.drain(), 5)

        asyncio.run(main())
        assert done == [True]  # its own cleanup was waited for
    finally:
        release.set()
        asyncio.run_coroutine_threadsafe(_aio.drain(), other).result(5)
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()
