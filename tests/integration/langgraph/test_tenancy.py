"""Two tenants with the same thread id and the same store namespace: the adapter never
shows one the other's checkpoints, writes or items, and raw SQL as the runtime role,
entered as one tenant, sees none of the other's rows in any LangGraph table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from psycopg import sql

from persistence import Database
from persistence.langgraph import PersistenceSaver, PersistenceStore
from tests.conftest import new_tenant
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget
from tests.integration.test_rls import enter, tenant_id

LG_TABLES = ("lg_threads", "lg_checkpoints", "lg_channels", "lg_blobs", "lg_writes")
LG_TABLES += ("lg_store_items",)
THREAD = {"configurable": {"thread_id": "same-thread", "checkpoint_ns": ""}}


def _write(saver: Any, store: Any, owner: str) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"owner": owner, "big": [owner] * 200}
    checkpoint["channel_versions"] = {"owner": 1, "big": 1}
    metadata = {"step": 0, "owner": owner}
    stored = saver.put(THREAD, checkpoint, metadata, {"owner": 1, "big": 1})
    saver.put_writes(stored, [("owner", owner)], "task-1")
    store.put(("memories", "shared"), "k", {"owner": owner})
    return str(checkpoint["id"])


def test_same_thread_and_namespace_in_two_tenants(
    db: Database, make_saver: Callable[..., Any], make_store: Callable[..., Any]
) -> None:
    a, b = new_tenant(db), new_tenant(db)
    sa, sb = make_saver(a), make_saver(b)
    ta, tb = make_store(a), make_store(b)
    id_a, id_b = _write(sa, ta, "a"), _write(sb, tb, "b")
    for saver, store, owner, mine in ((sa, ta, "a", id_a), (sb, tb, "b", id_b)):
        found = saver.get_tuple(THREAD)
        assert found.checkpoint["id"] == mine
        assert found.checkpoint["channel_values"]["big"] == [owner] * 200
        assert [w[2] for w in found.pending_writes] == [owner]
        assert [t.checkpoint["id"] for t in saver.list(None)] == [mine]
        assert [t.checkpoint["id"] for t in saver.list(None, filter={"owner": owner})] == [mine]
        assert store.get(("memories", "shared"), "k").value == {"owner": owner}
        assert [i.value for i in store.search(("memories",))] == [{"owner": owner}]
    # deleting, pruning and copying in one tenant leave the other's thread alone
    sb.prune(["same-thread"], strategy="delete")
    sb.copy_thread("same-thread", "copy")
    assert sb.get_tuple(THREAD) is None
    assert sa.get_tuple(THREAD).checkpoint["id"] == id_a
    other = {"configurable": {"thread_id": "copy", "checkpoint_ns": ""}}
    assert sa.get_tuple(other) is None


@pytest.fixture
def runtime(postgres: PostgresTarget) -> Any:
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        yield conn


def test_raw_sql_as_the_runtime_role_sees_one_tenant(
    pg_db: Database, runtime: psycopg.Connection[Any]
) -> None:
    db = pg_db
    a, b = new_tenant(db), new_tenant(db)
    for slug in (a, b):
        _write(PersistenceSaver(db, tenant=slug), PersistenceStore(db, tenant=slug), slug)
    a_id, b_id = tenant_id(db, a), tenant_id(db, b)
    enter(runtime, token(db, a))
    for table in LG_TABLES:
        mine = sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(sql.Identifier(table))
        everything = sql.SQL("SELECT count(DISTINCT tenant_id) FROM {}").format(
            sql.Identifier(table)
        )
        assert runtime.execute(mine, (a_id,)).fetchone() != (0,), table
        assert runtime.execute(mine, (b_id,)).fetchone() == (0,), table
        assert runtime.execute(everything).fetchone() == (1,), table
    enter(runtime, None)
    for table in LG_TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        assert runtime.execute(query).fetchone() == (0,), table
