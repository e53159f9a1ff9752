"""The read cache's invalidation channel: Redis pub/sub, listened to in a daemon thread.

Every process with ``cache='shared'`` publishes, after each commit that changed cached
keys, what changed (``[tenant id, key, floor]``: entries of the key below version
``floor`` are stale; or ``[tenant id, "*", 0]``: every entry of the tenant is), and
applies what the others publish to its in-process tier. Delivery is at most once, so
the channel also says whether it can be trusted: :attr:`InvalidationChannel.live_since`
is when the current subscription began, provided the server answered within the last
``2 * heartbeat`` seconds (a ping every ``heartbeat``); ``None`` when it is down, hung
or silent. An in-process entry filled before that moment (or while the channel was
down) may have missed its invalidation, and is served only while younger than
``cache_max_stale`` (``persistence._cache_front``).

One thread per ``Database`` on both APIs: the in-process tier is thread-safe, and a
thread keeps listening while an event loop is busy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from redis.exceptions import RedisError

__all__ = ["FORMAT", "InvalidationChannel", "message", "parsed"]

log = logging.getLogger(__name__)


#: The format of the messages :func:`message` writes (their first item).
FORMAT = 1


def message(tenant_id: Any, key: str, floor: int) -> bytes:
    """What a writer publishes: entries of ``key`` below ``floor`` are stale (``key``
    ``"*"``: every entry of the tenant). ``[FORMAT, tenant id, key, floor]`` in JSON."""
    return orjson.dumps([FORMAT, str(tenant_id), key, floor])


def parsed(data: Any) -> tuple[str, str, int] | None:
    """``(tenant id, key, floor)`` of a message of :data:`FORMAT`, else None."""
    try:
        items = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not (type(items) is list and len(items) == 4 and items[0] == FORMAT):
        return None
    _, tenant_id, key, floor = items
    if type(tenant_id) is not str or type(key) is not str or type(floor) is not int:
        return None
    return tenant_id, key, floor


class InvalidationChannel:
    """Subscribe to ``channel`` on ``url`` and call ``apply(tenant_id, key, floor)`` for
    each message, from a daemon thread, until :meth:`close`."""

    def __init__(
        self,
        url: str,
        channel: str,
        apply: Callable[[str, str, int], None],
        *,
        timeout: float,
        heartbeat: float = 0.25,
        password: str | None = None,
    ):
        self.channel = channel
        self.heartbeat = heartbeat
        self._apply = apply
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, password=password
        )
        self._stop = threading.Event()
        self._since: float | None = None  # subscribed since (monotonic), None when down
        self._seen = 0.0  # when the server last answered (monotonic)
        self._thread = threading.Thread(target=self._run, name="persistence-cache", daemon=True)
        self._thread.start()

    @property
    def live_since(self) -> float | None:
        """Since when the channel has been subscribed without a gap, if the server
        answered lately; else None (invalidations may be missed now)."""
        since = self._since
        if since is None or time.monotonic() - self._seen > 2 * self.heartbeat:
            return None
        return since

    def wait_live(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the subscription (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.live_since is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.live_since is not None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (RedisError, OSError, ValueError) as exc:
                log.debug("cache invalidation channel down: %s", exc)
            except Exception:  # never let the listener die: subscribe again
                log.exception("cache invalidation channel failed")
            self._since = None
            self._stop.wait(self.heartbeat)  # then subscribe again

    def _listen(self) -> None:
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]  # (typed from redis 8.2)
        try:
            pubsub.subscribe(self.channel)
            pinged = time.monotonic()
            while not self._stop.is_set():
                found = pubsub.get_message(timeout=self.heartbeat)
                now = time.monotonic()
                if found is not None:
                    self._seen = now
                    self._take(found, now)
                if now - pinged >= self.heartbeat:
                    pubsub.ping()
                    pinged = now
                if now - self._seen > 4 * self.heartbeat and self._since is not None:
                    raise TimeoutError("the invalidation channel went silent")
        finally:
            self._since = None
            pubsub.close()

    def _take(self, found: dict[str, Any], now: float) -> None:
        kind = found.get("type")
        if kind == "subscribe":
            self._since = now
        elif kind == "message":
            note = parsed(found["data"])
            if note is None:  # another format (a newer writer's?) or garbage: some
                # invalidation may be in it, so act as after a gap in the subscription:
                # nothing filled before now is served past cache_max_stale
                log.warning("a cache invalidation this process cannot read: %r", found["data"])
                self._since = now
                return
            self._apply(*note)
