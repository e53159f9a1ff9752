"""The parked-connection stack of the runtime pool (persistence._warm), without a
database: what is handed out, what is given back to the pool, and when nothing parks."""

from __future__ import annotations

import time

import pytest

from persistence._warm import WarmConnections


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable monotonic clock (and wall clock) for the module."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "time", lambda: now[0] + 1e9)
    return now


def _warm(limit: int = 3, recycle: float = -1, idle: float = 5.0) -> WarmConnections[str]:
    warm: WarmConnections[str] = WarmConnections(limit=limit, recycle=recycle)
    warm.idle = idle
    return warm


def test_the_last_parked_is_handed_out_first(clock: list[float]) -> None:
    warm = _warm()
    born = clock[0] + 1e9
    assert warm.park("a", born) and warm.park("b", born)
    assert len(warm) == 2
    assert warm.take() == ("b", [])
    assert warm.take() == ("a", [])
    assert warm.take() == (None, [])


def test_no_more_than_the_limit_park(clock: list[float]) -> None:
    warm = _warm(limit=2)
    born = clock[0] + 1e9
    assert warm.park("a", born) and warm.park("b", born)
    assert not warm.park("c", born)  # checked in instead
    assert len(warm) == 2


def test_nothing_parks_while_a_checkout_is_under_way_and_it_gets_the_parked(
    clock: list[float],
) -> None:
    warm = _warm()
    born = clock[0] + 1e9
    warm.park("a", born)
    released = warm.checkout_starts()
    assert [c for c, _ in released] == ["a"]  # for the pool to check in first
    assert not warm.park("b", born)
    warm.checkout_ends()
    assert warm.park("b", born)


def test_connections_idle_too_long_are_given_back_with_all_older_ones(
    clock: list[float],
) -> None:
    warm = _warm(idle=5.0)
    born = clock[0] + 1e9
    warm.park("old", born)
    clock[0] += 3
    warm.park("newer", born)
    clock[0] += 3  # old: idle 6 s, newer: 3 s
    assert warm.take() == ("newer", [])
    clock[0] += 3  # old: 9 s
    connection, unfit = warm.take()
    assert connection is None and [c for c, _ in unfit] == ["old"]
    assert unfit[0][1] == 1000.0  # when it was parked: its idle time is kept


def test_connections_parked_before_a_dead_one_was_found_are_given_back(
    clock: list[float],
) -> None:
    warm = _warm()
    born = clock[0] + 1e9
    warm.park("a", born)
    warm.park("b", born)
    clock[0] += 1
    warm.doubted_at[0] = clock[0]  # persistence._pool.doubt
    clock[0] += 1
    warm.park("c", born)
    assert warm.take() == ("c", [])
    connection, unfit = warm.take()
    assert connection is None and sorted(c for c, _ in unfit) == ["a", "b"]
    assert len(warm) == 0


def test_a_connection_due_for_recycle_is_given_back_and_the_next_one_used(
    clock: list[float],
) -> None:
    warm = _warm(recycle=60)
    wall = clock[0] + 1e9
    warm.park("fresh", wall)
    warm.park("due", wall - 61)  # its pool record is 61 s old
    connection, unfit = warm.take()
    assert connection == "fresh" and [c for c, _ in unfit] == ["due"]


def test_release_all_empties_the_stack(clock: list[float]) -> None:
    warm = _warm()
    warm.park("a", clock[0] + 1e9)
    assert [c for c, _ in warm.release_all()] == ["a"]
    assert warm.take() == (None, [])
