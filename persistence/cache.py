"""The read cache's in-process tier (versioned entries, least recently used first out,
bounded in bytes) and what the cache's front (``persistence._cache_front``) keeps beside
it: the kinds of entries, the watermarks, the lookups' tickets, the stats.

An entry carries the version of the row it was read from (a state's version, a
workflow's revision, a commit stamp). The tier never replaces an entry with an older
one: a slow reader that fetched an old row cannot overwrite what a newer reader or the
writer put there (the "no stale set" rule the cache's contract states). An evicted
key has no entry left to compare with, so a fill from an older read can follow its
eviction: serving only versions at least as new as the process has seen is the cache
front's job (it keeps those versions), not the tier's. Nothing here does I/O, so one
tier serves both APIs and every thread of a process.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from persistence.errors import InvalidInputError

__all__ = ["CacheStats", "Entry", "Kind", "LocalTier", "Marks", "Ticket", "TierStats"]

#: What an entry costs beyond its value's bytes (key, entry object, bookkeeping), counted
#: so that many small entries cannot exceed the budget unseen.
ENTRY_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached read: ``value`` (the bytes as stored, verified when read back out) at
    ``version`` of its row, with ``meta`` (small, immutable: codec, checksum, record
    fields) beside it."""

    version: int
    value: bytes
    meta: Any = None
    # Bookkeeping, not part of what an entry is (equality ignores it):
    filled_at: float = field(default=0.0, compare=False)  # (monotonic) read in-process
    expires: float = field(default=math.inf, compare=False)  # (monotonic) never served after
    written_at: float = field(default=0.0, compare=False)  # (wall clock) written to Redis
    marks_dropped: int = field(default=0, compare=False)  # Marks.dropped when kept in-process

    @property
    def size(self) -> int:
        return len(self.value) + ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class TierStats:
    hits: int
    misses: int
    fills: int
    stale_fills: int  # puts refused: a newer entry, or the same one as fresh, was there
    invalidations: int
    evictions: int
    entries: int
    bytes: int


class LocalTier:
    """Entries by key, at most ``max_bytes`` of them (values plus ``ENTRY_OVERHEAD``
    each); the least recently used go first. Thread-safe."""

    def __init__(self, max_bytes: int):
        if type(max_bytes) is not int or max_bytes < 0:
            raise InvalidInputError(f"max_bytes must be an int >= 0, not {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._fills = self._stale = 0
        self._invalidations = self._evictions = 0

    def get(self, key: str) -> Entry | None:
        """The entry under ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Keep ``entry`` under ``key`` unless a newer version is there already, or the
        same version filled as late (False: nothing changed): the same version read again
        renews the entry's age (``filled_at``), so a key read often stays servable. An
        entry larger than the whole budget is not kept; older entries make room for a
        new one."""
        size = entry.size
        with self._lock:
            current = self._entries.get(key)
            if current is not None and (
                current.version > entry.version
                or (current.version == entry.version and current.filled_at >= entry.filled_at)
            ):
                self._stale += 1
                return False
            if size > self.max_bytes:
                return False
            if current is not None:
                self._bytes -= current.size
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._bytes += size
            self._fills += 1
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size
                self._evictions += 1
            return True

    def invalidate(self, key: str, *, below: int | None = None) -> bool:
        """Drop the entry under ``key`` (only if its version is below ``below``, when
        given: an invalidation for version N must not drop N or later); whether one was
        dropped."""
        with self._lock:
            current = self._entries.get(key)
            if current is None or (below is not None and current.version >= below):
                return False
            del self._entries[key]
            self._bytes -= current.size
            self._invalidations += 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._invalidations += len(self._entries)
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> TierStats:
        with self._lock:
            return TierStats(
                hits=self._hits,
                misses=self._misses,
                fills=self._fills,
                stale_fills=self._stale,
                invalidations=self._invalidations,
                evictions=self._evictions,
                entries=len(self._entries),
                bytes=self._bytes,
            )


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of cached read: how its ``meta`` (a record) travels through Redis."""

    name: str
    pack: Callable[[Any], bytes]
    unpack: Callable[[bytes], Any]


class Ticket(NamedTuple):
    """Taken by a lookup that missed, before the database read: what the fill of its
    result is checked against. (A tuple: one is built on every lookup.)"""

    lkey: str
    seq: int  # watermark drops seen so far
    epoch: int | None  # the Redis epoch read (None: nothing to fill in Redis)
    at: float = 0.0  # (monotonic) when the lookup began


@dataclass(frozen=True, slots=True)
class CacheStats:
    """``db.cache.stats()``: each tier's counts, and the front's own."""

    local: TierStats
    shared: Any  # RedisTierStats (persistence._cache_redis), or None
    served_local: int
    served_shared: int
    refused_stale: int  # lookups or fills refused by a watermark or an entry's age
    invalidations_received: int


class Marks:
    """Per in-process key, the newest version seen; bounded (thread-safe)."""

    def __init__(self, limit: int = 65_536):
        self._marks: OrderedDict[str, int] = OrderedDict()
        self._limit = limit
        self.dropped = 0  # how many times watermarks were dropped (a sequence)
        self.lock = threading.Lock()

    def get(self, lkey: str) -> int:
        return self._marks.get(lkey, 0)  # (one look-up, atomic: no lock needed)

    def raise_to(self, lkey: str, version: int) -> None:
        with self.lock:
            if self._marks.get(lkey, 0) < version:
                self._marks[lkey] = version
            if lkey in self._marks:
                self._marks.move_to_end(lkey)
            while len(self._marks) > self._limit:
                self._marks.popitem(last=False)
                self.dropped += 1

    def allows(self, ticket: Ticket, version: int) -> bool:
        with self.lock:
            mark = self._marks.get(ticket.lkey)
            if mark is None:  # never seen, or dropped since: only if nothing was dropped
                return self.dropped == ticket.seq
            return version >= mark

    def clear(self) -> None:
        with self.lock:
            self.dropped += len(self._marks)
            self._marks.clear()
