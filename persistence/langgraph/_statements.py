"""The checkpointer's statements: the hot ones defined (and compiled) once for both
backends, the rest built per call from the pieces here."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Boolean, Table, and_, bindparam, func, or_, select, tuple_

from persistence._compiled import Statement
from persistence.models.langgraph import LgBlob, LgChannel, LgCheckpoint, LgThread, LgWrite
from persistence.repositories._sql import TENANT, WORKSPACE, upsert

__all__ = [
    "BLOBS",
    "CHANNELS",
    "CHECKPOINTS",
    "CHECKPOINT_ROW",
    "CLAIM",
    "GET_LATEST",
    "GET_ONE",
    "HEAD",
    "PUT_CHECKPOINT",
    "THREADS",
    "WRITES",
    "WRITE_ROW",
    "blobs_of",
    "in_thread",
    "writes_of",
]

THREADS = cast(Table, LgThread.__table__)
CHECKPOINTS = cast(Table, LgCheckpoint.__table__)
CHANNELS = cast(Table, LgChannel.__table__)
BLOBS = cast(Table, LgBlob.__table__)
WRITES = cast(Table, LgWrite.__table__)

_THREAD: Any = bindparam("thread_id")
_NS: Any = bindparam("checkpoint_ns")
_ID: Any = bindparam("checkpoint_id")


def in_thread(table: Table, *, ns: bool = True) -> Any:
    """The filter on one thread (and namespace) of the scope's workspace, bound as
    ``tenant_id``, ``workspace_id``, ``thread_id`` (and ``checkpoint_ns``)."""
    c = table.c
    where = and_(c.tenant_id == TENANT, c.workspace_id == WORKSPACE, c.thread_id == _THREAD)
    return and_(where, c.checkpoint_ns == _NS) if ns else where


_cp = CHECKPOINTS.c
CHECKPOINT_ROW = (
    _cp.thread_id,
    _cp.checkpoint_ns,
    _cp.checkpoint_id,
    _cp.parent_id,
    _cp.type,
    _cp.payload,
    _cp.codec,
    _cp.checksum,
    _cp.versions,
    _cp["metadata"],
)
GET_LATEST = Statement(
    select(*CHECKPOINT_ROW)
    .where(in_thread(CHECKPOINTS))
    .order_by(_cp.checkpoint_id.desc())
    .limit(1),
    "lg_get_latest",
    binary=True,
)
GET_ONE = Statement(
    select(*CHECKPOINT_ROW).where(in_thread(CHECKPOINTS), _cp.checkpoint_id == _ID),
    "lg_get_one",
    binary=True,
)

_w = WRITES.c
WRITE_ROW = (
    _w.thread_id,
    _w.checkpoint_ns,
    _w.checkpoint_id,
    _w.task_id,
    _w.idx,
    _w.channel,
    _w.type,
    _w.value,
    _w.codec,
    _w.checksum,
    _w.task_path,
)


def writes_of(keys: list[tuple[str, str, str]]) -> Any:
    """The pending writes of the checkpoints ``keys`` (thread, namespace, id), in the
    order LangGraph applies them (``writes_sort_key``)."""
    return (
        select(*WRITE_ROW)
        .where(
            _w.tenant_id == TENANT,
            _w.workspace_id == WORKSPACE,
            tuple_(_w.thread_id, _w.checkpoint_ns, _w.checkpoint_id).in_(keys),
        )
        .order_by(_w.task_path, _w.task_id, _w.idx)
    )


def blobs_of(keys: list[tuple[str, str, str, str]]) -> Any:
    """The blobs of ``keys`` (thread, namespace, channel, version) of the workspace; a
    key without a row, or whose row has no digest, is a channel emptied there."""
    ch, b = CHANNELS.c, BLOBS.c
    joined = CHANNELS.join(
        BLOBS,
        and_(
            b.tenant_id == ch.tenant_id,
            b.workspace_id == ch.workspace_id,
            b.thread_id == ch.thread_id,
            b.checkpoint_ns == ch.checkpoint_ns,
            b.digest == ch.digest,
        ),
    )
    return (
        select(
            ch.thread_id,
            ch.checkpoint_ns,
            ch.channel,
            ch.version,
            b.digest,
            b.type,
            b.codec,
            b.value,
        )
        .select_from(joined)
        .where(
            ch.tenant_id == TENANT,
            ch.workspace_id == WORKSPACE,
            tuple_(ch.thread_id, ch.checkpoint_ns, ch.channel, ch.version).in_(keys),
        )
    )


# -- writes ---------------------------------------------------------------------------

_t = THREADS.c


def _claim() -> Any:
    """Make the checkpoint being written the head of its (thread, namespace): a new row,
    or the row whose head is the checkpoint's parent. A fenced put whose parent is no
    longer the head updates nothing (and returns no row): another writer moved on."""
    insert = upsert(THREADS).values(
        tenant_id=TENANT,
        workspace_id=WORKSPACE,
        thread_id=_THREAD,
        checkpoint_ns=_NS,
        head=_ID,
        holder=bindparam("holder"),
        fence=1,
        updated_at=bindparam("now"),
    )
    parent: Any = bindparam("parent_key")
    continues = func.coalesce(_t.head, "") == parent
    # A new root (no parent) replaces the head only for the writer that wrote it.
    restarts = and_(parent == "", _t.holder == bindparam("holder"))
    return insert.on_conflict_do_update(
        index_elements=[_t.tenant_id, _t.workspace_id, _t.thread_id, _t.checkpoint_ns],
        set_={
            "head": insert.excluded.head,
            "holder": insert.excluded.holder,
            "fence": _t.fence + 1,
            "updated_at": insert.excluded.updated_at,
        },
        where=or_(bindparam("unfenced", type_=Boolean()), continues, restarts),
    ).returning(_t.fence)


def _put_checkpoint() -> Any:
    columns = [c.name for c in CHECKPOINTS.c if c.name not in ("tenant_id", "workspace_id")]
    values: dict[str, Any] = {name: bindparam(name) for name in columns}
    insert = upsert(CHECKPOINTS).values(tenant_id=TENANT, workspace_id=WORKSPACE, **values)
    keys = ("thread_id", "checkpoint_ns", "checkpoint_id", "created_at")
    return insert.on_conflict_do_update(
        index_elements=[
            _cp.tenant_id,
            _cp.workspace_id,
            _cp.thread_id,
            _cp.checkpoint_ns,
            _cp.checkpoint_id,
        ],
        set_={name: insert.excluded[name] for name in columns if name not in keys},
    )


CLAIM = Statement(_claim(), "lg_claim")
HEAD = Statement(select(_t.head).where(in_thread(THREADS)), "lg_head")
PUT_CHECKPOINT = Statement(_put_checkpoint(), "lg_put_checkpoint")
