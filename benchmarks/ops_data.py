"""Store, workflow, artifact and run cases against raw psycopg doing the same work.

Raw baselines: one transaction per operation that sets the tenant, prepared
statements, values serialized with orjson and SHA-256 checksummed (verified on
read), and each write in as few statements as SQL allows (CTEs, RETURNING).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson

from benchmarks.core import Bench, Op, case
from benchmarks.payloads import agent_state, blob
from benchmarks.targets import MIN_RATIO, OPERATIONS

WORKFLOW_SOURCE = "def run(x=1):\n    return {'doubled': x * 2}\n"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scope_params(bench: Any, **extra: Any) -> dict[str, Any]:
    """The tenant and workspace ids (of a ``Bench`` or an ``AsyncBench``) plus ``extra``."""
    return {"t": bench.tenant_id, "w": bench.workspace_id, **extra}


# -- stores ------------------------------------------------------------------------------

STORE_GET = """
SELECT value, codec, checksum FROM store_items
WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND store = %(s)s AND key_hash = %(h)s
"""
STORE_PUT = """
INSERT INTO store_items (tenant_id, workspace_id, store, key_hash, key, value, codec, checksum)
VALUES (%(t)s, %(w)s, %(s)s, %(h)s, %(k)s, %(v)s, 'none', %(c)s)
ON CONFLICT (tenant_id, workspace_id, store, key_hash)
DO UPDATE SET value = excluded.value, codec = excluded.codec, checksum = excluded.checksum
"""
_STORE_LOCK = """
SELECT name FROM stores WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND name = %(s)s
FOR NO KEY UPDATE
"""
STORE_CREATE = """
INSERT INTO stores (tenant_id, workspace_id, name, created_at) VALUES (%(t)s, %(w)s, %(s)s, now())
ON CONFLICT DO NOTHING
"""


def checked_item(row: Any) -> Any:
    """A store item row's value: the checksum verified, the JSON decoded."""
    if row is None:
        return None
    value = bytes(row[0])
    if sha256_hex(value) != row[2]:
        raise RuntimeError("checksum mismatch")
    return orjson.loads(value)


def item_params(params: dict[str, Any], value: Any) -> dict[str, Any]:
    """The parameters of :data:`STORE_PUT`: ``value`` serialized and checksummed."""
    data = orjson.dumps(value)
    return {**params, "v": data, "c": sha256_hex(data)}


def _raw_store_get(conn: Any, params: dict[str, Any]) -> Any:
    return checked_item(conn.execute(STORE_GET, params, prepare=True).fetchone())


def _raw_store_put(conn: Any, params: dict[str, Any], value: Any) -> None:
    conn.execute(STORE_PUT, item_params(params, value), prepare=True)


def store_params(bench: Any, store: str, key: str) -> dict[str, Any]:
    h = hashlib.sha256(key.encode()).digest()
    return scope_params(bench, s=store, k=key, h=h)


def _raw_store_setup(bench: Bench, store: str) -> None:
    with bench.raw_tx() as conn:
        conn.execute(STORE_CREATE, scope_params(bench, s=store))


@case("store.get", "store get", target=MIN_RATIO)
def _store_get(bench: Bench) -> tuple[Op, Op]:
    value = {"user": "u-42", "prefs": {"theme": "dark", "lang": "en"}, "count": 7}
    ours = bench.db.store(tenant=bench.env.tenant, name="bench-get")
    ours["k"] = value
    _raw_store_setup(bench, "raw-get")
    params = store_params(bench, "raw-get", "k")
    with bench.raw_tx() as conn:
        _raw_store_put(conn, params, value)

    def raw(i: int) -> Any:
        with bench.raw_tx() as conn:
            return _raw_store_get(conn, params)

    return (lambda i: ours["k"]), raw


@case("store.set", "store set", target=MIN_RATIO)
def _store_set(bench: Bench) -> tuple[Op, Op]:
    value = {"user": "u-42", "prefs": {"theme": "dark", "lang": "en"}, "count": 7}
    ours = bench.db.store(tenant=bench.env.tenant, name="bench-set")
    _raw_store_setup(bench, "raw-set")
    params = [store_params(bench, "raw-set", f"k{j}") for j in range(16)]

    def ours_set(i: int) -> None:
        ours[f"k{i % 16}"] = value

    def raw(i: int) -> None:
        with bench.raw_tx() as conn:
            _raw_store_put(conn, params[i % 16], value)

    return ours_set, raw


@case("store.incr", "store locked increment")
def _store_incr(bench: Bench) -> tuple[Op, Op]:
    ours = bench.db.store(tenant=bench.env.tenant, name="bench-incr")
    ours["n"] = 0
    _raw_store_setup(bench, "raw-incr")
    params = store_params(bench, "raw-incr", "n")

    def ours_incr(i: int) -> None:
        with ours.transaction(lock=True):
            ours["n"] = ours.get("n", 0) + 1

    def raw(i: int) -> None:
        with bench.raw_tx() as conn:
            conn.execute(_STORE_LOCK, params, prepare=True)
            current = _raw_store_get(conn, params) or 0
            _raw_store_put(conn, params, current + 1)

    return ours_incr, raw


# -- workflows ---------------------------------------------------------------------------

WORKFLOW_GET = """
SELECT r.name, r.revision, r.source, r.description, r.tags, r.checksum, r.created_at,
       w.created_at, w.updated_at
FROM workflows w
JOIN workflow_revisions r ON r.tenant_id = w.tenant_id AND r.workspace_id = w.workspace_id
     AND r.name = w.name AND r.revision = w.latest_revision
WHERE w.tenant_id = %(t)s AND w.workspace_id = %(w)s AND w.name = %(n)s
"""


@case("workflow.get", "workflow get by name", target=MIN_RATIO)
def _workflow_get(bench: Bench) -> tuple[Op, Op]:
    with bench.db.unit_of_work(bench.env.tenant) as uow:
        uow.workflows.save("bench_flow", WORKFLOW_SOURCE, description="doubles", tags=["a"])

    def ours(i: int) -> Any:
        with bench.db.unit_of_work(bench.env.tenant) as uow:
            return uow.workflows.get("bench_flow")

    def raw(i: int) -> Any:
        with bench.raw_tx() as conn:
            row = conn.execute(WORKFLOW_GET, scope_params(bench, n="bench_flow"), prepare=True)
            return row.fetchone()

    return ours, raw


# -- artifacts ---------------------------------------------------------------------------

ARTIFACT_SAVE = """
INSERT INTO artifacts (tenant_id, workspace_id, name, kind, content_type, user_metadata, codec,
                       checksum, size, stored_size, payload, created_at, updated_at)
VALUES (%(t)s, %(w)s, %(n)s, 'bytes', 'application/octet-stream', '{}', 'none', %(c)s,
        %(z)s, %(z)s, %(p)s, now(), now())
ON CONFLICT (tenant_id, workspace_id, name) DO UPDATE
SET payload = excluded.payload, checksum = excluded.checksum, size = excluded.size,
    stored_size = excluded.stored_size, updated_at = excluded.updated_at
RETURNING created_at
"""
ARTIFACT_LOAD = """
SELECT kind, codec, checksum, payload FROM artifacts
WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND name = %(n)s
"""


def artifact_params(bench: Any, name: str, data: bytes) -> dict[str, Any]:
    """The parameters of :data:`ARTIFACT_SAVE` (and :data:`ARTIFACT_LOAD`)."""
    return scope_params(bench, n=name, c=sha256_hex(data), z=len(data), p=data)


def checked_blob(row: Any) -> bytes:
    """An artifact row's payload, its checksum verified."""
    assert row is not None
    if sha256_hex(row[3]) != row[2]:
        raise RuntimeError("checksum mismatch")
    return bytes(row[3])


def _artifact_cases(size: int, label: str) -> None:
    data = blob(size)
    factor = 1.0 if size <= 4096 else 0.1
    target = MIN_RATIO if f"artifact.save_{label}" in OPERATIONS else None

    @case(f"artifact.save_{label}", f"artifact save {label}", target=target, n_factor=factor)
    def _save(bench: Bench) -> tuple[Op, Op]:
        def ours(i: int) -> Any:
            with bench.db.unit_of_work(bench.env.tenant) as uow:
                return uow.artifacts.save(f"save-{label}-{i % 8}", data)

        def raw(i: int) -> Any:
            params = artifact_params(bench, f"raw-save-{label}-{i % 8}", data)
            with bench.raw_tx() as conn:
                return conn.execute(ARTIFACT_SAVE, params, prepare=True).fetchone()

        return ours, raw

    @case(f"artifact.load_{label}", f"artifact load {label}", target=target, n_factor=factor)
    def _load(bench: Bench) -> tuple[Op, Op]:
        with bench.db.unit_of_work(bench.env.tenant) as uow:
            uow.artifacts.save(f"load-{label}", data)
        params = artifact_params(bench, f"raw-load-{label}", data)
        with bench.raw_tx() as conn:
            conn.execute(ARTIFACT_SAVE, params)

        def ours(i: int) -> Any:
            with bench.db.unit_of_work(bench.env.tenant) as uow:
                return uow.artifacts.load(f"load-{label}")

        def raw(i: int) -> bytes:
            with bench.raw_tx() as conn, conn.cursor(binary=True) as cur:
                row = cur.execute(ARTIFACT_LOAD, params, prepare=True).fetchone()
            return checked_blob(row)

        return ours, raw


_artifact_cases(1024, "1 KiB")
_artifact_cases(1 << 20, "1 MiB")


# -- runs --------------------------------------------------------------------------------

_RUN_START = """
WITH run AS (
    INSERT INTO runs (tenant_id, workspace_id, id, workflow, status, args, args_codec,
                      args_checksum, tags, parent_run_id, worker, attempts, history_seq,
                      not_before, created_at, updated_at)
    SELECT %(t)s, %(w)s, %(id)s::varchar, %(wf)s::varchar, 'pending', %(a)s::bytea, 'none',
           %(c)s::varchar, '[]', NULL, NULL,
           0, 1, now(), now(), now()
    WHERE EXISTS (SELECT 1 FROM workflows
                  WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND name = %(wf)s::varchar)
    RETURNING id, created_at
)
INSERT INTO run_history (tenant_id, workspace_id, run_id, seq, status, at, worker, note)
SELECT %(t)s, %(w)s, id, 1, 'pending', created_at, NULL, NULL FROM run
RETURNING run_id
"""
_RUN_CLAIM = """
WITH due AS (
    SELECT id FROM runs
    WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND status IN ('pending', 'retrying')
      AND not_before <= now()
    ORDER BY not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE runs r SET status = 'running', worker = %(wk)s::varchar, attempts = r.attempts + 1,
                      history_seq = r.history_seq + 1, updated_at = now()
    FROM due WHERE r.tenant_id = %(t)s AND r.workspace_id = %(w)s AND r.id = due.id
    RETURNING r.id, r.history_seq, r.args, r.args_checksum
), history AS (
    INSERT INTO run_history (tenant_id, workspace_id, run_id, seq, status, at, worker, note)
    SELECT %(t)s, %(w)s, id, history_seq, 'running', now(), %(wk)s::varchar, 'claimed'
    FROM claimed
)
SELECT id, args, args_checksum FROM claimed
"""
_RUN_RESULT = """
WITH done AS (
    UPDATE runs SET status = 'succeeded', result = %(r)s, result_codec = 'none',
                    result_checksum = %(c)s, history_seq = history_seq + 1, updated_at = now()
    WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND id = %(id)s AND status = 'running'
    RETURNING id, history_seq
)
INSERT INTO run_history (tenant_id, workspace_id, run_id, seq, status, at, worker, note)
SELECT %(t)s, %(w)s, id, history_seq, 'succeeded', now(), NULL, NULL FROM done
RETURNING run_id
"""


@case("run.cycle", "run start + claim + set_result (3 transactions)")
def _run_cycle(bench: Bench) -> tuple[Op, Op]:
    from benchmarks.env import workspace_id

    # Separate workspaces: a claim takes the oldest pending run of its workspace.
    with bench.db.admin() as admin:
        admin.workspaces.create(bench.env.tenant, "runs-ours")
        admin.workspaces.create(bench.env.tenant, "runs-raw")
    for ws in ("runs-ours", "runs-raw"):
        with bench.db.unit_of_work(bench.env.tenant, ws) as uow:
            uow.workflows.save("bench_flow", WORKFLOW_SOURCE)
    raw_ws = workspace_id(bench.env, "runs-raw")
    args, result = {"x": 21, "state": agent_state()}, {"doubled": 42}
    tenant = bench.env.tenant

    def ours(i: int) -> None:
        with bench.db.unit_of_work(tenant, "runs-ours") as uow:
            uow.runs.start("bench_flow", args=args)
        with bench.db.unit_of_work(tenant, "runs-ours") as uow:
            run = uow.runs.claim(worker="w1")
        assert run is not None
        with bench.db.unit_of_work(tenant, "runs-ours") as uow:
            uow.runs.set_result(run.id, result)

    def raw(i: int) -> None:
        ids = {"t": bench.tenant_id, "w": raw_ws}
        payload = orjson.dumps(args)
        start = {**ids, "id": uuid.uuid4().hex, "wf": "bench_flow", "a": payload}
        start["c"] = sha256_hex(payload)
        with bench.raw_tx("runs-raw") as conn:
            if conn.execute(_RUN_START, start, prepare=True).fetchone() is None:
                raise RuntimeError("unknown workflow")
        with bench.raw_tx("runs-raw") as conn:
            row = conn.execute(_RUN_CLAIM, {**ids, "wk": "w1"}, prepare=True).fetchone()
        assert row is not None
        if sha256_hex(bytes(row[1])) != row[2]:
            raise RuntimeError("checksum mismatch")
        orjson.loads(bytes(row[1]))
        out = orjson.dumps(result)
        with bench.raw_tx("runs-raw") as conn:
            done = {**ids, "id": row[0], "r": out, "c": sha256_hex(out)}
            conn.execute(_RUN_RESULT, done, prepare=True).fetchone()

    return ours, raw
