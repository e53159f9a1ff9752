"""``persistence cache stats|flush``: what Redis holds per tenant, and a flush every
process obeys at once (docs/cache.md, "Operations")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from persistence import Database
from persistence.cli import main
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget

Opener = Callable[..., Database]


def _cli(
    capsys: pytest.CaptureFixture[str], postgres: PostgresTarget, redis_url: str, *args: str
) -> tuple[int, Any, str]:
    urls = ["--database-url", postgres.runtime_url, "--owner-url", postgres.owner_url]
    capsys.readouterr()
    try:
        main([*urls, "--redis-url", redis_url, "--json", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, (json.loads(out) if code == 0 else None), err.strip()


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str],
    postgres: PostgresTarget,
    redis_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., tuple[int, Any, str]]:
    monkeypatch.setenv("PERSISTENCE_REDIS_KEY_PREFIX", prefix)
    return lambda *args, url=redis_url: _cli(capsys, postgres, url, *args)


def _load(db: Database, tenant: str, sid: str = "doc") -> Any:
    with db.unit_of_work(tenant) as uow:
        return uow.states.load(sid).state


def _save(db: Database, tenant: str, value: Any, sid: str = "doc") -> None:
    with db.unit_of_work(tenant) as uow:
        uow.states.save(sid, value)


def _by_slug(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["tenant"]: row for row in rows}


def test_stats_counts_each_tenants_entries(
    pg_db: Database, cached: Opener, cli: Callable[..., Any]
) -> None:
    first, second, db = new_tenant(pg_db), new_tenant(pg_db), cached()
    for sid in ("a", "b", "c"):
        _save(db, first, {"sid": sid}, sid=sid)
    _save(db, second, {"sid": "x"}, sid="x")
    code, rows, _ = cli("cache", "stats")
    found = _by_slug(rows)
    assert code == 0 and found[first]["entries"] == 3 and found[second]["entries"] == 1
    assert found[first]["bytes"] > 0 and found[first]["tombstones"] == 0
    code, rows, _ = cli("cache", "stats", "--tenant", second)
    assert [row["tenant"] for row in rows] == [second]


def test_flush_of_a_tenant_is_obeyed_by_every_process(
    pg_db: Database, cached: Opener, cli: Callable[..., Any]
) -> None:
    """A change made behind the cache's back (here: a database with no cache, so
    nothing is announced) is served stale until the flush, then never again."""
    tenant, other = new_tenant(pg_db), new_tenant(pg_db)
    reader = cached(cache_ttl=3600, cache_max_stale=3600)
    _save(reader, tenant, {"n": 1})
    _save(reader, other, {"n": 1})
    _save(pg_db, tenant, {"n": 2})  # uncached: no invalidation goes out
    assert _load(reader, tenant) == {"n": 1}  # stale, as documented for such writes
    epoch = _by_slug(cli("cache", "stats", "--tenant", tenant)[1])[tenant]["epoch"]

    code, report, _ = cli("cache", "flush", "--tenant", tenant)
    assert code == 0 and report == {"flushed": tenant, "tenants": 1, "keys_removed": 1}
    deadline = time.monotonic() + 2.0
    while _load(reader, tenant) != {"n": 2} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _load(reader, tenant) == {"n": 2}  # its in-process tier obeyed too
    after = _by_slug(cli("cache", "stats")[1])
    assert after[tenant]["epoch"] == epoch + 1
    assert after[other]["entries"] == 1  # the other tenant's entries were left alone

    code, report, _ = cli("cache", "flush")
    assert code == 0 and report["tenants"] >= 2 and report["keys_removed"] >= 2
    assert all(row["entries"] == 0 for row in cli("cache", "stats")[1])


def test_cache_commands_fail_cleanly(
    pg_db: Database, cli: Callable[..., Any], prefix: str, redis_url: str
) -> None:
    tenant = new_tenant(pg_db)
    code, _, err = cli("cache", "flush", "--tenant", "no-such-tenant")
    assert code != 0 and "no-such-tenant" in err
    for args in (("cache", "stats"), ("cache", "flush", "--tenant", tenant)):
        code, _, err = cli(*args, url="redis://127.0.0.1:1/0")
        assert code != 0 and err.startswith("error: cache service unreachable"), err
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}:*"))
