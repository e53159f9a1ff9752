"""What the checkpointer stores: a value written once however many checkpoints and
pending writes hold it, blobs removed with the last row referring to them, and a blob
that does not match its digest refused on read. Both backends."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy import Uuid, bindparam, text

from persistence import Database
from persistence.errors import DataCorruptionError
from persistence.langgraph import PersistenceSaver
from tests.conftest import new_tenant

THREAD = {"configurable": {"thread_id": "doc-thread", "checkpoint_ns": ""}}
FIRST, SECOND = "first draft " * 100, "second draft " * 100


@pytest.fixture
def db(sync_db: Database) -> Database:
    return sync_db


def _put(saver: PersistenceSaver, parent: Any, doc: str, version: Any) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"doc": doc}
    checkpoint["channel_versions"] = {"doc": version}
    return saver.put(parent or THREAD, checkpoint, {"step": 0}, {"doc": version})


def _blobs(db: Database, tenant: str) -> int:
    with db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    query = text("SELECT count(*) FROM lg_blobs WHERE tenant_id = :t")
    query = query.bindparams(bindparam("t", type_=Uuid()))
    with db.owner_engine.connect() as conn:
        return int(conn.execute(query, {"t": tenant_id}).scalar_one())


def test_a_value_is_stored_once_and_removed_with_its_last_reference(db: Database) -> None:
    tenant = new_tenant(db)
    saver = PersistenceSaver(db, tenant=tenant)
    first = _put(saver, None, FIRST, "1")
    saver.put_writes(first, [("doc", SECOND)], "task-1")  # what the next checkpoint holds
    second = _put(saver, first, SECOND, "2")
    assert _blobs(db, tenant) == 2  # FIRST, and SECOND once for the write and the channel
    assert saver.get_tuple(first).pending_writes == [("task-1", "doc", SECOND)]
    assert saver.get_tuple(second).checkpoint["channel_values"]["doc"] == SECOND
    saver.prune(["doc-thread"], strategy="keep_latest")
    assert _blobs(db, tenant) == 1  # FIRST went with the first checkpoint; SECOND stays
    assert saver.get_tuple(THREAD).checkpoint["channel_values"]["doc"] == SECOND
    saver.delete_thread("doc-thread")
    assert _blobs(db, tenant) == 0


@pytest.mark.parametrize("version", [1e20, 1e-05, 0.5, 2**60, "v-1"])
def test_a_prune_keeps_the_values_of_any_version_a_kept_checkpoint_names(
    db: Database, version: Any
) -> None:
    """Channel versions may be numbers of any kind (a saver's get_next_version): the
    prune's orphan sweep finds the channel rows of the kept checkpoint by the version's
    value, however JSON and the stored text spell it (1e20 against '1e+20')."""
    tenant = new_tenant(db)
    saver = PersistenceSaver(db, tenant=tenant)
    first = _put(saver, None, FIRST, "0")
    _put(saver, first, SECOND, version)
    saver.prune(["doc-thread"], strategy="keep_latest")
    found = saver.get_tuple(THREAD)
    assert found is not None
    assert found.checkpoint["channel_versions"] == {"doc": version}
    assert found.checkpoint["channel_values"]["doc"] == SECOND
    assert _blobs(db, tenant) == 1  # the pruned checkpoint's own value went


def test_an_altered_blob_is_refused(db: Database) -> None:
    tenant = new_tenant(db)
    saver = PersistenceSaver(db, tenant=tenant, compression="none")
    first = _put(saver, None, FIRST, "1")
    saver.put_writes(first, [("doc", SECOND)], "task-1")
    with db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    altered = text("UPDATE lg_blobs SET value = :v WHERE tenant_id = :t")
    altered = altered.bindparams(bindparam("t", type_=Uuid()))
    with db.owner_engine.begin() as conn:
        conn.execute(altered, {"t": tenant_id, "v": b"\x00" * 16})
    with pytest.raises(DataCorruptionError):
        saver.get_tuple(THREAD)


def test_a_clone_with_another_allowlist_reads_the_same_threads(db: Database) -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    tenant = new_tenant(db)
    strict = JsonPlusSerializer(allowed_msgpack_modules=[("my_module", "A")])
    saver = PersistenceSaver(db, tenant=tenant, serde=strict)
    _put(saver, None, FIRST, "1")
    clone = saver.with_allowlist([("my_module", "B")])
    assert isinstance(clone, PersistenceSaver) and clone is not saver
    assert clone._core is not saver._core and clone._core.serde is clone.serde
    assert clone.get_tuple(THREAD).checkpoint["channel_values"]["doc"] == FIRST
