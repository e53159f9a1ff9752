"""Redis commands on idle connections of the read cache's own (``persistence._cache_redis``;
the sync module ``_redis_direct.py`` is generated from this one).

The cache's commands are few and short: an ``MGET`` of two keys on every hit, an
``EVALSHA`` of a small script on every fill and every commit. Through redis-py's client
each pays its pool (a lock, a checkout and a checkin), its retry wrapper, its command
encoder and its response callbacks, several times the socket's own work. Here a command
is packed as RESP once (:func:`packed`) and sent on a connection made as the client's
pool makes its (same class and options: TLS, timeouts, credentials, protocol, hiredis
when installed), and kept idle for the next command.

A connection that failed is closed, never reused; an error reply (``NOSCRIPT``) leaves
it usable. One idle for :data:`PROBE_AFTER` seconds or more is checked for a close by the
server before it is used (a busy one goes out as it is: if the server closed it
meanwhile, the command fails on the way and is sent again on a new one). After a fork
the parent's connections are dropped, not shared.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["IDLE", "PROBE_AFTER", "Direct", "bulk", "packed", "sha1"]

#: Idle connections kept (one per thread or task running a command at once).
IDLE = 8
#: Seconds a connection sits idle before it is checked for a close by the server
#: before use (a probe costs as much client CPU as a quarter of a command).
PROBE_AFTER = 1.0
# Forks seen by this process (os.register_at_fork, once a Direct exists): cheaper than
# comparing os.getpid() on every command.
_forks = [0]
_watching: list[bool] = []


def _forked() -> None:
    _forks[0] += 1


def _watch_forks() -> None:
    if not _watching:
        _watching.append(True)
        os.register_at_fork(after_in_child=_forked)


def packed(*args: Any) -> bytes:
    """``args`` as one RESP command: ``bytes`` as they are, ``str`` in UTF-8 (redis-py's
    default encoding), ``int`` in decimal."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if type(arg) is bytes:
            raw = arg
        elif type(arg) is str:
            raw = arg.encode()
        elif type(arg) is int:
            raw = b"%d" % arg
        else:
            raise TypeError(f"a Redis argument must be bytes, str or int, not {type(arg)}")
        out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


def bulk(arg: str | bytes) -> bytes:
    """One argument of a RESP command (as :func:`packed` writes it), for commands whose
    parts are kept prebuilt."""
    raw = arg.encode() if isinstance(arg, str) else arg
    return b"$%d\r\n%b\r\n" % (len(raw), raw)


def sha1(source: str) -> str:
    """The SHA1 Redis names a script by (``EVALSHA``)."""
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _probe(conn: Any) -> Any:  # sync:
    """The asyncio connection's readability check (``can_read`` from redis-py 8,  # sync:
    ``can_read_destructive`` before it)."""  # sync:
    return getattr(conn, "can_read", None) or conn.can_read_destructive  # sync:


class Direct:
    """Commands on connections of ``pool``'s kind (a client's ``connection_pool``)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._idle: list[tuple[Any, float]] = []  # (a connection, when it went idle)
        _watch_forks()
        self._forks = _forks[0]
        self._closed = False

    async def command(self, command: bytes, *, resend: bool = True) -> Any:
        """Send ``command`` (from :func:`packed`) and read its reply (an error reply
        raised as redis-py's ``ResponseError``).

        An idle connection the server closed meanwhile (its ``timeout``, a restart, a
        proxy's idle cut) is dropped before use; one that fails on the way anyway is
        replaced and the command sent once more on a new connection, unless ``resend``
        is False (the error is raised). The cache's commands may run twice: its scripts
        are version compare-and-sets, an MGET reads, and an epoch bumped twice is as
        unservable as once."""
        conn, reused = await self._take()
        try:
            return await self._exchange(conn, command)
        except (RedisConnectionError, OSError):
            if not reused or not resend:
                raise
        conn, _ = await self._take(fresh=True)
        return await self._exchange(conn, command)

    async def _take(self, *, fresh: bool = False) -> tuple[Any, bool]:
        """An idle connection that is still open (True), or a new one (False)."""
        if self._forks != _forks[0]:  # forked: the parent's sockets are not ours
            self._idle, self._forks = [], _forks[0]
        while self._idle and not fresh:
            try:
                conn, since = self._idle.pop()
            except IndexError:  # (another thread took the last one)
                break
            if time.monotonic() - since < PROBE_AFTER:
                return conn, True
            try:
                readable = await _probe(conn)()  # sync: readable = conn.can_read()
            except (RedisConnectionError, OSError):
                readable = True
            if not readable:  # (a live idle connection has nothing to read)
                return conn, True
            await conn.disconnect(nowait=True)  # sync: conn.disconnect()
        return self._pool.connection_class(**self._pool.connection_kwargs), False

    async def _exchange(self, conn: Any, command: bytes) -> Any:
        try:
            await conn.send_packed_command([command], check_health=False)
            reply = await conn.read_response()
        except ResponseError:
            await self._release(conn)  # an error reply: the connection is fine
            raise
        except BaseException:
            await conn.disconnect(nowait=True)  # sync: conn.disconnect()
            raise
        if len(self._idle) < IDLE and not self._closed:  # (_release, inline: every command)
            self._idle.append((conn, time.monotonic()))
        else:
            await conn.disconnect()
        return reply

    async def script(
        self, client: Any, source: str, sha: str, *args: Any, resend: bool = True
    ) -> Any:
        """``EVALSHA sha *args``, loading ``source`` through ``client`` if Redis does not
        know it yet (a restarted or flushed server); ``resend`` as for :meth:`command`."""
        command = packed("EVALSHA", sha, *args)
        try:
            return await self.command(command, resend=resend)
        except NoScriptError:
            await client.script_load(source)
            return await self.command(command, resend=resend)

    async def _release(self, conn: Any) -> None:
        if len(self._idle) < IDLE and not self._closed:
            self._idle.append((conn, time.monotonic()))
        else:
            await conn.disconnect()

    async def close(self) -> None:
        """Close the idle connections; one in use is closed when its command ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.disconnect()
