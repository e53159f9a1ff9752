"""What every benchmark case gets (``Bench``) and the registry of cases."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from benchmarks.env import BenchEnv, scope_token, tenant_id, workspace_id
from persistence import Database

Op = Callable[[int], object]


@dataclass
class Bench:
    """Open connections of one run: our Database and the baselines' raw clients."""

    env: BenchEnv
    db: Database
    raw: psycopg.Connection[Any]  # autocommit; transactions are explicit, like ours
    redis: redis.Redis
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID
    stack: ExitStack
    langgraph: Any = None  # langgraph.store.postgres.PostgresStore, when installed
    langgraph_error: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)  # the raw side's, per workspace

    @classmethod
    def open(cls, env: BenchEnv, stack: ExitStack, *, langgraph: bool = True) -> Bench:
        db = stack.enter_context(env.database())
        raw = stack.enter_context(psycopg.connect(env.runtime_dsn, autocommit=True))
        client = redis.Redis.from_url(env.redis_url, socket_timeout=5)
        stack.callback(client.close)
        bench = cls(env, db, raw, client, tenant_id(env), workspace_id(env), stack)
        if langgraph:
            bench._open_langgraph()
        return bench

    def _open_langgraph(self) -> None:
        try:
            from langgraph.store.postgres import PostgresStore
        except ImportError as exc:
            self.langgraph_error = (
                f"langgraph-checkpoint-postgres is not installed ({exc}); "
                "install it with: .venv/bin/pip install -e '.[bench]'"
            )
            return
        store = self.stack.enter_context(PostgresStore.from_conn_string(self.env.langgraph_dsn))
        store.setup()
        self.langgraph = store

    def raw_tx(self, workspace: str = "default") -> Any:
        """A raw transaction that sets the scope token of ``workspace`` exactly like
        ``persistence_enter`` does (the policies verify it per statement, both sides)."""
        token = self._tokens.get(workspace)
        if token is None:
            token = self._tokens[workspace] = scope_token(self.env, workspace)
        return _RawTx(self.raw, token)


class _RawTx:
    """``with bench.raw_tx() as cur:`` BEGIN; set the scope (prepared); ...; COMMIT."""

    def __init__(self, conn: psycopg.Connection[Any], token: str):
        self.conn, self.token = conn, token

    def __enter__(self) -> psycopg.Connection[Any]:
        self._tx = self.conn.transaction()
        self._tx.__enter__()
        self.conn.execute(
            "SELECT set_config('persistence.scope', %s, true)", (self.token,), prepare=True
        )
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        self._tx.__exit__(*exc)


@dataclass(frozen=True)
class Case:
    """One row of the table: our operation against one baseline."""

    key: str  # what --ops selects
    label: str
    baseline: str  # "psycopg", "LangGraph PostgresStore", "redis-py", ...
    build: Callable[[Bench], tuple[Op, Op | None]]
    target: float | None = None  # minimum ours/baseline ratio (benchmarks/targets.py)
    n_factor: float = 1.0  # fewer operations for heavy cases (1 MiB payloads)
    raw_psycopg: bool = True  # the baseline runs on bench.raw (its round trips are counted)


CASES: list[Case] = []


def case(
    key: str,
    label: str,
    baseline: str = "psycopg",
    *,
    target: float | None = None,
    n_factor: float = 1.0,
) -> Callable[[Callable[[Bench], tuple[Op, Op | None]]], Callable[[Bench], Any]]:
    """Register a case builder: ``build(bench) -> (ours, baseline)``."""

    def register(build: Callable[[Bench], tuple[Op, Op | None]]) -> Callable[[Bench], Any]:
        raw = baseline.startswith("psycopg")
        CASES.append(Case(key, label, baseline, build, target, n_factor, raw_psycopg=raw))
        return build

    return register
