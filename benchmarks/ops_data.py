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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ids(bench: Bench, **extra: Any) -> dict[str, Any]:
    return {"t": bench.tenant_id, "w": bench.workspace_id, **extra}


# -- stores ------------------------------------------------------------------------------

_STORE_GET = """
SELECT value, codec, checksum FROM store_items
WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND store = %(s)s AND key_hash = %(h)s
"""
_STORE_PUT = """
INSERT INTO store_items (tenant_id, workspace_id, store, key_hash, key, value, codec, checksum)
VALUES (%(t)s, %(w)s, %(s)s, %(h)s, %(k)s, %(v)s, 'none', %(c)s)
ON CONFLICT (tenant_id, workspace_id, store, key_hash)
DO UPDATE SET value = excluded.value, codec = excluded.codec, checksum = excluded.checksum
"""
_STORE_LOCK = """
SELECT name FROM stores WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND name = %(s)s
FOR NO KEY UPDATE
"""
_STORE_CREATE = """
INSERT INTO stores (tenant_id, workspace_id, name, created_at) VALUES (%(t)s, %(w)s, %(s)s, now())
ON CONFLICT DO NOTHING
"""


def _raw_store_get(conn: Any, params: dict[str, Any]) -> Any:
    row = conn.execute(_STORE_GET, params, prepare=True).fetchone()
    if row is None:
        return None
    value = bytes(row[0])
    if _sha(value) != row[2]:
        raise RuntimeError("checksum mismatch")
    return orjson.loads(value)


def _raw_store_put(conn: Any, params: dict[str, Any], value: Any) -> None:
    data = orjson.dumps(value)
    conn.execute(_STORE_PUT, {**params, "v": data, "c": _sha(data)}, prepare=True)


def _store_params(bench: Bench, store: str, key: str) -> dict[str, Any]:
    h = hashlib.sha256(key.encode()).digest()
    return _ids(bench, s=store, k=key, h=h)


def _raw_store_setup(bench: Bench, store: str) -> None:
    with bench.raw_tx() as conn:
        conn.execute(_STORE_CREATE, _ids(bench, s=store))


@case("store.get", "store get", target=MIN_RATIO)
def _store_get(bench: Bench) -> tuple[Op, Op]:
    value = {"user": "u-42", "prefs": {"theme": "dark", "lang": "en"}, "count": 7}
    ours = bench.db.store(tenant=bench.env.tenant, name="bench-get")
    ours["k"] = value
    _raw_store_setup(bench, "raw-get")
    params = _store_params(bench, "raw-get", "k")
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
    params = [_store_params(bench, "raw-set", f"k{j}") for j in range(16)]

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
    params = _store_params(bench, "raw-incr", "n")

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

_WORKFLOW_GET = """
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
            row = conn.execute(_WORKFLOW_GET, _ids(bench, n="bench_flow"), prepare=True)
            return row.fetchone()

    return ours, raw


# -- artifacts ---------------------------------------------------------------------------

_ARTIFACT_SAVE = """
INSERT INTO artifacts (tenant_id, workspace_id, name, kind, content_type, user_metadata, codec,
                       checksum, size, stored_size, payload, created_at, updated_at)
VALUES (%(t)s, %(w)s, %(n)s, 'bytes', 'application/octet-stream', '{}', 'none', %(c)s,
        %(z)s, %(z)s, %(p)s, now(), now())
ON CONFLICT (tenant_id, workspace_id, name) DO UPDATE
SET payload = excluded.payload, checksum = excluded.checksum, size = excluded.size,
    stored_size = excluded.stored_size, updated_at = excluded.updated_at
RETURNING created_at
"""
_ARTIFACT_LOAD = """
SELECT kind, codec, checksum, payload FROM artifacts
WHERE tenant_id = %(t)s AND workspace_id = %(w)s AND name = %(n)s
"""


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
            params = _ids(bench, n=f"raw-save-{label}-{i % 8}", c=_sha(data), z=len(data), p=data)
            with bench.raw_tx() as conn:
                return conn.execute(_ARTIFACT_SAVE, params, prepare=True).fetchone()

        return ours, raw

    @case(f"artifact.load_{label}", f"artifact load {label}", target=target, n_factor=factor)
    def _load(bench: Bench) -> tuple[Op, Op]:
        with bench.db.unit_of_work(bench.env.tenant) as uow:
            uow.artifacts.save(f"load-{label}", data)
        params = _ids(bench, n=f"raw-load-{label}", c=_sha(data), z=len(data), p=data)
        with bench.raw_tx() as conn:
            conn.execute(_ARTIFACT_SAVE, params)

        def ours(i: int) -> Any:
            with bench.db.unit_of_work(bench.env.tenant) as uow:
                return uow.artifacts.load(f"load-{label}")

        def raw(i: int) -> bytes:
            with bench.raw_tx() as conn, conn.cursor(binary=True) as cur:
                row = cur.execute(_ARTIFACT_LOAD, params, prepare=True).fetchone()
            assert row is not None
            if _sha(row[3]) != row[2]:
                raise RuntimeError("checksum mismatch")
            return bytes(row[3])

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
        start["c"] = _sha(payload)
        with bench.raw_tx() as conn:
            if conn.execute(_RUN_START, start, prepare=True).fetchone() is None:
                raise RuntimeError("unknown workflow")
        with bench.raw_tx() as conn:
            row = conn.execute(_RUN_CLAIM, {**ids, "wk": "w1"}, prepare=True).fetchone()
        assert row is not None
        if _sha(bytes(row[1])) != row[2]:
            raise RuntimeError("checksum mismatch")
        orjson.loads(bytes(row[1]))
        out = orjson.dumps(result)
        with bench.raw_tx() as conn:
            done = {**ids, "id": row[0], "r": out, "c": _sha(out)}
            conn.execute(_RUN_RESULT, done, prepare=True).fetchone()

    return ours, raw
