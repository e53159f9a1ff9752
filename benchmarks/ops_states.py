"""State cases: save a new version, load latest and by version; raw psycopg and LangGraph.

The raw baseline is what a careful engineer writes by hand for the same guarantees:
one transaction that sets the tenant for RLS, prepared statements, the JSON
serialized and checksummed, version numbers gap-free under concurrency (the head
row is bumped and the version inserted in one statement), the checksum verified on
load and the latest version found through the head row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from benchmarks.core import Bench, Op, case
from benchmarks.payloads import agent_state
from benchmarks.targets import MIN_RATIO

STATES = 64  # saves rotate over this many states (one writer: no contention either way)

RAW_SAVE = """
WITH head AS (
    INSERT INTO state_heads AS h (tenant_id, workspace_id, state_id, last_version,
                                  latest_version, parent_version, expires_at, updated_at)
    VALUES (%(t)s, %(w)s, %(s)s, 1, 1, NULL, NULL, now())
    ON CONFLICT (tenant_id, workspace_id, state_id) DO UPDATE
        SET last_version = h.last_version + 1, latest_version = h.last_version + 1,
            parent_version = h.latest_version, expires_at = NULL, updated_at = now()
    RETURNING last_version, parent_version, updated_at
)
INSERT INTO state_versions (tenant_id, workspace_id, state_id, version, parent_version,
                            created_at, expires_at, raw_size, stored_size, codec, checksum,
                            tags, metadata, payload)
SELECT %(t)s, %(w)s, %(s)s, last_version, parent_version, updated_at, NULL, %(n)s, %(n)s,
       'none', %(c)s, '[]', '{}', %(p)s
FROM head
RETURNING version, created_at
"""

RAW_LOAD_LATEST = """
SELECT v.version, v.parent_version, v.created_at, v.expires_at, v.raw_size, v.stored_size,
       v.codec, v.checksum, v.tags, v.metadata, v.payload
FROM state_heads h
JOIN state_versions v ON v.tenant_id = h.tenant_id AND v.workspace_id = h.workspace_id
     AND v.state_id = h.state_id AND v.version = h.latest_version
WHERE h.tenant_id = %(t)s AND h.workspace_id = %(w)s AND h.state_id = %(s)s
  AND (h.expires_at IS NULL OR h.expires_at > now())
"""

RAW_LOAD_VERSION = """
SELECT version, parent_version, created_at, expires_at, raw_size, stored_size,
       codec, checksum, tags, metadata, payload
FROM state_versions
WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND state_id = %(s)s AND version = %(v)s
  AND (expires_at IS NULL OR expires_at > now())
"""


def save_params(bench: Any, state_id: str, value: Any) -> dict[str, Any]:
    """The parameters of :data:`RAW_SAVE`: ``value`` serialized and checksummed."""
    payload = orjson.dumps(value)
    return {
        "t": bench.tenant_id,
        "w": bench.workspace_id,
        "s": state_id,
        "n": len(payload),
        "c": hashlib.sha256(payload).hexdigest(),
        "p": payload,
    }


def load_params(bench: Any, state_id: str, version: int | None) -> tuple[str, dict[str, Any]]:
    """The statement and parameters of a raw load (latest, or ``version``)."""
    params = {"t": bench.tenant_id, "w": bench.workspace_id, "s": state_id, "v": version}
    return (RAW_LOAD_LATEST if version is None else RAW_LOAD_VERSION), params


def checked_value(row: Any) -> Any:
    """A loaded row's value: the checksum verified, the JSON decoded."""
    if row is None:
        return None
    payload = bytes(row[10])
    if hashlib.sha256(payload).hexdigest() != row[7]:
        raise RuntimeError("checksum mismatch")
    return orjson.loads(payload)


def raw_save(bench: Bench, state_id: str, value: Any) -> int:
    """The raw baseline of ``uow.states.save``; returns the new version."""
    params = save_params(bench, state_id, value)
    with bench.raw_tx() as conn:
        row = conn.execute(RAW_SAVE, params, prepare=True).fetchone()
    assert row is not None
    return int(row[0])


def raw_load(bench: Bench, state_id: str, version: int | None = None) -> Any:
    """The raw baseline of ``uow.states.load``: fetch, verify the checksum, decode."""
    sql, params = load_params(bench, state_id, version)
    with bench.raw_tx() as conn:
        row = conn.execute(sql, params, prepare=True).fetchone()
    return checked_value(row)


def ours_save(bench: Bench, state_id: str, value: Any) -> Any:
    with bench.db.unit_of_work(bench.env.tenant) as uow:
        return uow.states.save(state_id, value)


def ours_load(bench: Bench, state_id: str, version: int | None = None) -> Any:
    with bench.db.unit_of_work(bench.env.tenant) as uow:
        return uow.states.load(state_id, version=version)


def seed_state(bench: Bench, state_id: str, versions: int) -> None:
    """Write ``versions`` versions through our API, in one unit of work."""
    value = agent_state()
    with bench.db.unit_of_work(bench.env.tenant) as uow:
        for _ in range(versions):
            uow.states.save(state_id, value)


@case("state.save", "state save (new version)", target=MIN_RATIO)
def _save(bench: Bench) -> tuple[Op, Op]:
    value = agent_state()
    return (
        lambda i: ours_save(bench, f"save-{i % STATES}", value),
        lambda i: raw_save(bench, f"raw-save-{i % STATES}", value),
    )


@case("state.load", "state load latest", target=MIN_RATIO)
def _load(bench: Bench) -> tuple[Op, Op]:
    seed_state(bench, "load", 3)
    return (lambda i: ours_load(bench, "load"), lambda i: raw_load(bench, "load"))


@case("state.load_version", "state load by version", target=MIN_RATIO)
def _load_version(bench: Bench) -> tuple[Op, Op]:
    seed_state(bench, "load-v", 3)
    return (lambda i: ours_load(bench, "load-v", 2), lambda i: raw_load(bench, "load-v", 2))


# -- LangGraph PostgresStore ------------------------------------------------------------


def _langgraph(bench: Bench) -> Any:
    if bench.langgraph is None:
        raise RuntimeError(bench.langgraph_error or "LangGraph is unavailable")
    return bench.langgraph


@case("state.save_vs_langgraph", "state save vs put", "LangGraph PostgresStore", target=1.5)
def _save_lg(bench: Bench) -> tuple[Op, Op]:
    store, value = _langgraph(bench), agent_state()
    namespace = ("bench", "default")
    return (
        lambda i: ours_save(bench, f"lg-save-{i % STATES}", value),
        lambda i: store.put(namespace, f"lg-save-{i % STATES}", value),
    )


@case("state.load_vs_langgraph", "state load vs get", "LangGraph PostgresStore", target=1.5)
def _load_lg(bench: Bench) -> tuple[Op, Op]:
    store, value = _langgraph(bench), agent_state()
    namespace = ("bench", "default")
    seed_state(bench, "lg-load", 3)
    store.put(namespace, "lg-load", value)

    def lg_get(i: int) -> Any:
        item = store.get(namespace, "lg-load")
        return item.value

    return (lambda i: ours_load(bench, "lg-load"), lg_get)
