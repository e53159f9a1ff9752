"""The read cache's in-process tier (persistence.cache.LocalTier): bounded in bytes,
least recently used out first, never an older entry over a newer one, thread-safe."""

from __future__ import annotations

import random
import threading
from dataclasses import replace

import pytest

from persistence.cache import ENTRY_OVERHEAD, Entry, LocalTier
from persistence.errors import InvalidInputError


def _entry(version: int, size: int = 10) -> Entry:
    return Entry(version, b"x" * size)


def test_a_put_entry_is_got_back_and_counted() -> None:
    tier = LocalTier(10_000)
    assert tier.get("a") is None
    assert tier.put("a", Entry(3, b"abc", meta=("none", "sum")))
    got = tier.get("a")
    assert got is not None and got.version == 3 and got.value == b"abc"
    assert got.meta == ("none", "sum")
    s = tier.stats()
    assert (s.hits, s.misses, s.fills, s.entries) == (1, 1, 1, 1)
    assert s.bytes == 3 + ENTRY_OVERHEAD


def test_an_older_or_equal_version_never_replaces_a_newer_one() -> None:
    tier = LocalTier(10_000)
    tier.put("k", _entry(5))
    assert not tier.put("k", _entry(4))  # a slow reader's old row
    assert not tier.put("k", _entry(5))
    assert tier.put("k", _entry(6, size=20))
    got = tier.get("k")
    assert got is not None and got.version == 6
    assert tier.stats().stale_fills == 2
    assert tier.stats().bytes == 20 + ENTRY_OVERHEAD  # the replaced entry's bytes are freed


def test_the_same_version_read_again_renews_the_entrys_age() -> None:
    tier = LocalTier(10_000)
    tier.put("k", replace(_entry(5), filled_at=1.0))
    assert tier.put("k", replace(_entry(5), filled_at=2.0))  # read again later: renewed
    got = tier.get("k")
    assert got is not None and got.filled_at == 2.0
    assert not tier.put("k", replace(_entry(5), filled_at=1.5))  # (an older read of it)
    assert tier.stats().entries == 1


def test_the_least_recently_used_go_first_and_the_budget_holds() -> None:
    size = 100 + ENTRY_OVERHEAD
    tier = LocalTier(3 * size)
    for key in "abc":
        tier.put(key, _entry(1, 100))
    assert tier.get("a") is not None  # a is now the most recently used
    tier.put("d", _entry(1, 100))
    assert tier.get("b") is None  # evicted
    assert [k for k in "acd" if tier.get(k) is not None] == ["a", "c", "d"]
    s = tier.stats()
    assert s.evictions == 1 and s.bytes == 3 * size <= tier.max_bytes


def test_an_entry_larger_than_the_budget_is_not_kept() -> None:
    tier = LocalTier(500)
    tier.put("small", _entry(1, 10))
    assert not tier.put("huge", _entry(1, 1_000))
    assert tier.get("huge") is None
    assert tier.get("small") is not None  # nothing evicted for it


def test_invalidation_drops_only_what_is_older_than_asked() -> None:
    tier = LocalTier(10_000)
    tier.put("k", _entry(7))
    assert not tier.invalidate("k", below=7)  # version 7 is not older than 7
    assert tier.invalidate("k", below=8)
    assert tier.get("k") is None
    assert not tier.invalidate("k")
    tier.put("j", _entry(1))
    tier.clear()
    s = tier.stats()
    assert s.entries == 0 and s.bytes == 0 and s.invalidations == 2


def test_a_zero_budget_keeps_nothing_and_a_bad_budget_is_refused() -> None:
    assert not LocalTier(0).put("k", _entry(1, 0))
    for bad in (-1, 1.5, "1"):
        with pytest.raises(InvalidInputError):
            LocalTier(bad)  # type: ignore[arg-type]


def _hammer(tier: LocalTier, newest: dict[str, int]) -> None:
    """8 threads putting random versions of 60 keys and reading them; ``newest``: the
    newest version each key was given (puts that succeeded)."""
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2_000):
            key, version = f"k{rng.randrange(60)}", rng.randrange(1_000)
            if tier.put(key, _entry(version, 64)):
                with lock:
                    newest[key] = max(newest.get(key, -1), version)
            tier.get(f"k{rng.randrange(60)}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_threads_never_leave_an_older_version_over_a_newer_one() -> None:
    tier = LocalTier(100 * (64 + ENTRY_OVERHEAD))  # room for every key: nothing evicted
    newest: dict[str, int] = {}
    _hammer(tier, newest)
    assert tier.stats().evictions == 0
    for key, version in newest.items():
        got = tier.get(key)
        assert got is not None and got.version == version


def test_threads_keep_the_budget() -> None:
    # (an evicted key can be filled again from an older read: the cache front keeps
    # the versions a process has seen, so it never serves one below them)
    tier = LocalTier(40 * (64 + ENTRY_OVERHEAD))
    _hammer(tier, {})
    s = tier.stats()
    assert s.evictions > 0
    assert s.bytes <= tier.max_bytes and s.bytes == s.entries * (64 + ENTRY_OVERHEAD)
