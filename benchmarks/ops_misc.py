"""The empty unit of work and the lease (raw BEGIN; COMMIT and raw redis-py)."""

from __future__ import annotations

import uuid

from benchmarks.core import Bench, Op, case

# The usual compare-and-delete release a careful redis-py user writes.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@case("uow.empty", "empty unit of work", "psycopg BEGIN; COMMIT")
def _empty_uow(bench: Bench) -> tuple[Op, Op]:
    def ours(i: int) -> None:
        with bench.db.unit_of_work(bench.env.tenant):
            pass

    def raw(i: int) -> None:
        with bench.raw.transaction():
            pass

    return ours, raw


@case("lease", "lease acquire + release", "redis-py SET NX PX + Lua")
def _lease(bench: Bench) -> tuple[Op, Op]:
    release = bench.redis.register_script(_RELEASE)
    prefix = f"{bench.env.redis_prefix}:raw-lease:"

    def ours(i: int) -> None:
        with bench.db.lease(tenant=bench.env.tenant, name=f"lease-{i % 16}", ttl=30):
            pass

    def raw(i: int) -> None:
        key, token = f"{prefix}{i % 16}", uuid.uuid4().hex
        if not bench.redis.set(key, token, nx=True, px=30_000):
            raise RuntimeError("raw lease not acquired")
        release(keys=[key], args=[token])

    return ours, raw
