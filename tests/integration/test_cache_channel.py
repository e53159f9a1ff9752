"""The read cache's invalidation channel on a real Redis: messages of its format are
applied; anything else counts as a gap in the subscription (an invalidation might be in
it), so entries filled before it stop being served once older than cache_max_stale."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from persistence._cache_channel import FORMAT, InvalidationChannel, message, parsed


def test_messages_carry_their_format_and_round_trip() -> None:
    tenant = uuid.uuid4()
    data = message(tenant, "state:w:doc", 7)
    assert data.startswith(b"[%d," % FORMAT)
    assert parsed(data) == (str(tenant), "state:w:doc", 7)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'["t", "k", 1]',  # the format before it had a number
        b'[2, "t", "k", 1]',  # a later format
        b'[1, "t", "k", "1"]',
        b'[1, "t", "k"]',
        b"{}",
    ],
)
def test_anything_else_is_not_read(data: bytes) -> None:
    assert parsed(data) is None


@pytest.fixture
def channel(redis_url: str) -> Iterator[tuple[InvalidationChannel, list[Any]]]:
    applied: list[Any] = []
    name = f"ptest-channel-{uuid.uuid4().hex[:8]}"
    listener = InvalidationChannel(
        redis_url, name, lambda *note: applied.append(note), timeout=2, heartbeat=0.05
    )
    assert listener.wait_live(5)
    yield listener, applied
    listener.close()


def _publish(redis_url: str, channel: str, data: bytes) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.publish(channel, data) == 1
    finally:
        client.close()


def _until(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_message_is_applied(
    redis_url: str, channel: tuple[InvalidationChannel, list[Any]]
) -> None:
    listener, applied = channel
    tenant = uuid.uuid4()
    _publish(redis_url, listener.channel, message(tenant, "k", 3))
    _until(lambda: applied)
    assert applied == [(str(tenant), "k", 3)]


def test_an_unreadable_message_counts_as_a_gap(
    redis_url: str, channel: tuple[InvalidationChannel, list[Any]]
) -> None:
    listener, applied = channel
    before = listener.live_since
    assert before is not None
    time.sleep(0.02)
    _publish(redis_url, listener.channel, b'[2, "t", "k", 1]')
    _until(lambda: (listener.live_since or 0) > before)
    assert applied == []  # nothing applied, but entries filled before it lost their cover
