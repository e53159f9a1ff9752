"""Read-cache cases (docs/cache.md): a cached state load from the in-process tier and
from the Redis tier, against LangGraph's ``PostgresStore.get``, raw psycopg and a raw
redis-py ``GET`` of the same bytes; and a miss against today's uncached load.

Each cached database is a ``Database`` of its own on the run's throwaway database and
Redis prefix: ``cache='local'`` for the in-process tier, ``cache='shared'`` with
``cache_local_bytes=0`` (nothing kept in-process) for the Redis tier alone.
"""

from __future__ import annotations

from typing import Any

import orjson

from benchmarks.core import Bench, Op, case
from benchmarks.ops_states import _langgraph, ours_load, raw_load, seed_state
from benchmarks.payloads import agent_state
from persistence import Database

MISSES = 8192  # distinct states a miss case walks through (more than a run reads)


def _cached(bench: Bench, **settings: Any) -> Database:
    db = bench.stack.enter_context(bench.env.database(**settings))
    if db.cache is not None and db.cache.channel is not None:
        db.cache.channel.wait_live(5)
    return db


def _load_from(db: Database, tenant: str, state_id: str) -> Any:
    with db.unit_of_work(tenant) as uow:
        return uow.states.load(state_id)


def _warm(bench: Bench, db: Database, state_id: str) -> Op:
    seed_state(bench, state_id, 3)
    tenant = bench.env.tenant
    assert _load_from(db, tenant, state_id) is not None  # filled
    return lambda i: _load_from(db, tenant, state_id)


def _lg_get(bench: Bench, key: str) -> Op:
    store, namespace = _langgraph(bench), ("bench", "default")
    store.put(namespace, key, agent_state())
    return lambda i: store.get(namespace, key).value


@case(
    "cache.local_vs_langgraph",
    "cached load, in-process tier",
    "LangGraph PostgresStore",
    target=5.0,
)
def _local_lg(bench: Bench) -> tuple[Op, Op]:
    ours = _warm(bench, _cached(bench, cache="local", cache_max_stale=3600), "c-local-lg")
    return ours, _lg_get(bench, "c-local-lg")


@case("cache.local", "cached load, in-process tier", target=5.0)
def _local_raw(bench: Bench) -> tuple[Op, Op]:
    ours = _warm(bench, _cached(bench, cache="local", cache_max_stale=3600), "c-local")
    return ours, lambda i: raw_load(bench, "c-local")


def _redis_only(bench: Bench) -> Database:
    return _cached(bench, cache="shared", cache_local_bytes=0)


@case("cache.shared_vs_langgraph", "cached load, Redis tier", "LangGraph PostgresStore", target=1.5)
def _shared_lg(bench: Bench) -> tuple[Op, Op]:
    ours = _warm(bench, _redis_only(bench), "c-shared-lg")
    return ours, _lg_get(bench, "c-shared-lg")


@case("cache.shared_vs_redis", "cached load, Redis tier", "redis-py GET", target=0.7)
def _shared_redis(bench: Bench) -> tuple[Op, Op]:
    ours = _warm(bench, _redis_only(bench), "c-shared-r")
    key = f"{bench.env.redis_prefix}:bench-get"
    bench.redis.set(key, orjson.dumps(agent_state()))  # the same bytes a state holds
    return ours, lambda i: orjson.loads(bench.redis.get(key) or b"null")


def _misses(bench: Bench, prefix: str) -> list[str]:
    value = agent_state()
    ids = [f"{prefix}-{n}" for n in range(MISSES)]
    with bench.db.unit_of_work(bench.env.tenant) as uow:
        for state_id in ids:
            uow.states.save(state_id, value)
    return ids


@case(
    "cache.miss", "cache miss (Redis tier), vs uncached load", "persistence, cache off", target=0.91
)
def _miss(bench: Bench) -> tuple[Op, Op]:
    db, tenant = _redis_only(bench), bench.env.tenant
    cold, plain = _misses(bench, "c-miss"), _misses(bench, "c-plain")
    # (a state written through the uncached database is in no tier: every load misses)
    return (
        lambda i: _load_from(db, tenant, cold[i % MISSES]),
        lambda i: ours_load(bench, plain[i % MISSES]),
    )
