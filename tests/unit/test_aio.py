"""The asyncio cleanups that outlive their cancelled callers (persistence._aio)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

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


def test_shielded_runs_in_the_callers_task_and_returns_its_result() -> None:
    async def cleanup() -> tuple[object, int]:
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.01)  # a future
        return asyncio.current_task(), 42

    async def main() -> None:
        task, value = await _aio.shielded(cleanup())
        assert task is asyncio.current_task()  # no task of its own while not cancelled
        assert value == 42

    asyncio.run(main())


def test_shielded_raises_the_cleanups_error_to_its_caller() -> None:
    async def cleanup() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("rollback failed")

    async def main() -> None:
        try:
            await _aio.shielded(cleanup())
        except ValueError as exc:
            assert str(exc) == "rollback failed"
        else:
            raise AssertionError("the error was lost")

    asyncio.run(main())


def _cancel_during(wait: str, cancels: int) -> list[str]:
    """Cancel a caller ``cancels`` times while its shielded cleanup waits (on a future,
    a bare yield or I/O); what happened, in order."""
    events: list[str] = []

    async def cleanup(gate: asyncio.Future[None]) -> None:
        events.append("cleanup started")
        if wait == "yield":
            for _ in range(5):
                await asyncio.sleep(0)
        else:
            await gate  # the cleanup's own I/O: must not be cancelled with the caller
        await asyncio.sleep(0.01)
        events.append("cleanup finished")

    async def caller(gate: asyncio.Future[None]) -> None:
        try:
            await _aio.shielded(cleanup(gate))
        except asyncio.CancelledError:
            events.append("caller cancelled")
            raise

    async def main() -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(caller(gate))
        await asyncio.sleep(0)  # the cleanup starts and waits
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not gate.cancelled()
        gate.set_result(None)
        await asyncio.wait_for(_aio.drain(), 5)

    asyncio.run(main())
    return events


def test_a_cancelled_caller_leaves_at_once_and_the_cleanup_runs_to_its_end() -> None:
    for wait in ("future", "yield"):
        for cancels in (1, 2):
            events = _cancel_during(wait, cancels)
            assert events == ["cleanup started", "caller cancelled", "cleanup finished"], (
                wait,
                cancels,
            )


def test_a_timeout_around_a_shielded_cleanup_raises_timeout_after_it_moved_on() -> None:
    finished: list[bool] = []

    async def cleanup() -> None:
        await asyncio.sleep(0.05)
        finished.append(True)

    async def main() -> None:
        try:
            async with asyncio.timeout(0.01):
                await _aio.shielded(cleanup())
        except TimeoutError:
            assert finished == []  # the caller did not wait for the cleanup
        else:
            raise AssertionError("no timeout")
        await asyncio.wait_for(_aio.drain(), 5)
        assert finished == [True]

    asyncio.run(main())


def test_a_cleanup_that_fails_after_its_caller_left_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def cleanup() -> None:
        await asyncio.sleep(0.02)
        raise ValueError("rollback failed")

    async def main() -> None:
        task = asyncio.ensure_future(_aio.shielded(cleanup()))
        await asyncio.sleep(0.005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.wait_for(_aio.drain(), 5)

    with caplog.at_level("ERROR", logger="persistence._aio"):
        asyncio.run(main())
    assert "cleanup after a cancellation failed" in caplog.text
