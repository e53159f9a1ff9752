"""The checkpointer's statements: the hot ones defined (and compiled) once for both
backends, the rest built per call from the pieces here."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)

from persistence._compiled import Statement
from persistence.models.base import UTCDateTime
from persistence.models.langgraph import LgBlob, LgChannel, LgCheckpoint, LgThread, LgWrite
from persistence.repositories._sql import TENANT, WORKSPACE, upsert

__all__ = [
    "BLOBS",
    "BLOBS_PG",
    "BUMP",
    "CHANNELS",
    "CHECKPOINTS",
    "CHECKPOINT_ROW",
    "CLAIM",
    "GET_LATEST",
    "GET_ONE",
    "HEAD",
    "PUT_BLOB",
    "PUT_CHANNEL",
    "PUT_CHECKPOINT",
    "PUT_PG",
    "THREADS",
    "WRITES",
    "WRITES_KEEP_PG",
    "WRITES_OF_PG",
    "WRITES_REPLACE_PG",
    "WRITE_KEEP",
    "WRITE_REPLACE",
    "WRITE_ROW",
    "blobs_of",
    "in_thread",
    "in_thread_renamed",
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


def in_thread_renamed(table: Table) -> Any:
    """:func:`in_thread` (with the namespace) bound as ``t_id``, ``w_id``, ``th_id`` and
    ``ns``: an UPDATE reserves its table's column names for its SET clause."""
    c = table.c
    return and_(
        c.tenant_id == bindparam("t_id"),
        c.workspace_id == bindparam("w_id"),
        c.thread_id == bindparam("th_id"),
        c.checkpoint_ns == bindparam("ns"),
    )


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


def _fence() -> Any:
    """The (thread, namespace)'s fence: what a cached latest checkpoint is versioned by."""
    t = THREADS.c
    return select(t.fence).where(in_thread(THREADS)).scalar_subquery().label("fence")


GET_LATEST = Statement(
    select(*CHECKPOINT_ROW, _fence())
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
    order LangGraph applies them (``writes_sort_key``), a large value's blob beside."""
    b = BLOBS.c
    joined = WRITES.outerjoin(
        BLOBS,
        and_(
            b.tenant_id == _w.tenant_id,
            b.workspace_id == _w.workspace_id,
            b.thread_id == _w.thread_id,
            b.checkpoint_ns == _w.checkpoint_ns,
            b.digest == _w.digest,
        ),
    )
    return (
        select(*WRITE_ROW, _w.digest, b.codec.label("blob_codec"), b.value.label("blob_value"))
        .select_from(joined)
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


def _row(table: Table, replaced: tuple[str, ...]) -> Any:
    """Insert one row of ``table`` (every column a parameter of its name); on a key
    conflict, keep the stored row or replace its ``replaced`` columns."""
    scope = ("tenant_id", "workspace_id")
    values: dict[str, Any] = {c.name: bindparam(c.name) for c in table.c if c.name not in scope}
    insert = upsert(table).values(tenant_id=TENANT, workspace_id=WORKSPACE, **values)
    if not replaced:
        return insert.on_conflict_do_nothing()
    return insert.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={name: insert.excluded[name] for name in replaced},
    )


_WRITE_VALUE = ("channel", "type", "value", "codec", "checksum", "task_path", "digest")
PUT_BLOB = Statement(_row(BLOBS, ()), "lg_put_blob")
PUT_CHANNEL = Statement(_row(CHANNELS, ("digest",)), "lg_put_channel")
WRITE_KEEP = Statement(_row(WRITES, ()), "lg_write_keep")
WRITE_REPLACE = Statement(_row(WRITES, _WRITE_VALUE), "lg_write_replace")
CLAIM = Statement(_claim(), "lg_claim")
#: SQLite: a task's writes raise the namespace's fence (PostgreSQL: in WRITES_*_PG).
BUMP = Statement(
    update(THREADS)
    .where(in_thread_renamed(THREADS))
    .values(fence=THREADS.c.fence + 1)
    .returning(THREADS.c.fence),
    "lg_bump",
)
HEAD = Statement(select(_t.head).where(in_thread(THREADS)), "lg_head")
PUT_CHECKPOINT = Statement(_put_checkpoint(), "lg_put_checkpoint")


# -- PostgreSQL: a whole put, and a task's writes, in one statement each ----------------

_PUT_PG = """
WITH claim AS (
    INSERT INTO lg_threads AS t
        (tenant_id, workspace_id, thread_id, checkpoint_ns, head, holder, fence, updated_at)
    VALUES (:tenant_id, :workspace_id, :thread_id, :checkpoint_ns, :checkpoint_id, :holder, 1,
            :now)
    ON CONFLICT (tenant_id, workspace_id, thread_id, checkpoint_ns) DO UPDATE
        SET head = excluded.head, holder = excluded.holder, fence = t.fence + 1,
            updated_at = excluded.updated_at
        WHERE :unfenced OR coalesce(t.head, '') = :parent_key
           OR (:parent_key = '' AND t.holder = excluded.holder)
    RETURNING t.fence
), blobs AS (
    INSERT INTO lg_blobs
        (tenant_id, workspace_id, thread_id, checkpoint_ns, digest, type, codec, value)
    SELECT :tenant_id, :workspace_id, :thread_id, :checkpoint_ns, b.digest, b.type, b.codec,
           b.value
    FROM unnest(CAST(:blob_digests AS bytea[]), CAST(:blob_types AS text[]),
                CAST(:blob_codecs AS text[]), CAST(:blob_values AS bytea[]))
         AS b(digest, type, codec, value)
    WHERE EXISTS (SELECT FROM claim)
    ON CONFLICT DO NOTHING
), channels AS (
    INSERT INTO lg_channels
        (tenant_id, workspace_id, thread_id, checkpoint_ns, channel, version, digest)
    SELECT :tenant_id, :workspace_id, :thread_id, :checkpoint_ns, c.channel, c.version,
           c.digest
    FROM unnest(CAST(:channel_names AS text[]), CAST(:channel_versions AS text[]),
                CAST(:channel_digests AS bytea[])) AS c(channel, version, digest)
    WHERE EXISTS (SELECT FROM claim)
    ON CONFLICT (tenant_id, workspace_id, thread_id, checkpoint_ns, channel, version)
        DO UPDATE SET digest = excluded.digest
), checkpoint AS (
    INSERT INTO lg_checkpoints
        (tenant_id, workspace_id, thread_id, checkpoint_ns, checkpoint_id, parent_id, run_id,
         type, payload, codec, checksum, versions, metadata, created_at)
    SELECT :tenant_id, :workspace_id, :thread_id, :checkpoint_ns, :checkpoint_id, :parent_id,
           :run_id, :type, :payload, :codec, :checksum, :versions, :metadata, :now
    WHERE EXISTS (SELECT FROM claim)
    ON CONFLICT (tenant_id, workspace_id, thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
        SET parent_id = excluded.parent_id, run_id = excluded.run_id, type = excluded.type,
            payload = excluded.payload, codec = excluded.codec, checksum = excluded.checksum,
            versions = excluded.versions, metadata = excluded.metadata
)
SELECT (SELECT fence FROM claim) AS fence,
       CASE WHEN NOT EXISTS (SELECT FROM claim) THEN
           (SELECT head FROM lg_threads
            WHERE tenant_id = :tenant_id AND workspace_id = :workspace_id
              AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns)
       END AS head
"""

_WRITES_PG = """
WITH bump AS (
    UPDATE lg_threads SET fence = fence + 1
    WHERE tenant_id = :tenant_id AND workspace_id = :workspace_id AND thread_id = :thread_id
      AND checkpoint_ns = :checkpoint_ns
    RETURNING fence
), blobs AS (
    INSERT INTO lg_blobs
        (tenant_id, workspace_id, thread_id, checkpoint_ns, digest, type, codec, value)
    SELECT :tenant_id, :workspace_id, :thread_id, :checkpoint_ns, b.digest, b.type, b.codec,
           b.value
    FROM unnest(CAST(:blob_digests AS bytea[]), CAST(:blob_types AS text[]),
                CAST(:blob_codecs AS text[]), CAST(:blob_values AS bytea[]))
         AS b(digest, type, codec, value)
    ON CONFLICT DO NOTHING
), written AS (
INSERT INTO lg_writes AS w
    (tenant_id, workspace_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,
     type, value, codec, checksum, task_path, digest)
SELECT :tenant_id, :workspace_id, :thread_id, :checkpoint_ns, :checkpoint_id, :task_id, x.idx,
       x.channel, x.type, x.value, x.codec, x.checksum, :task_path, x.digest
FROM unnest(CAST(:idxs AS integer[]), CAST(:channels AS text[]), CAST(:types AS text[]),
            CAST(:values AS bytea[]), CAST(:codecs AS text[]), CAST(:checksums AS bytea[]),
            CAST(:digests AS bytea[]))
     AS x(idx, channel, type, value, codec, checksum, digest)
ON CONFLICT (tenant_id, workspace_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
"""


def _pg(sql: str, **types: Any) -> Any:
    return text(sql).bindparams(*(bindparam(name, type_=t) for name, t in types.items()))


_IDS = {"tenant_id": Uuid(), "workspace_id": Uuid()}
PUT_PG = Statement(
    _pg(_PUT_PG, **_IDS, now=UTCDateTime(), unfenced=Boolean()).columns(
        fence=BigInteger(), head=Text()
    ),
    "lg_put_pg",
)
_FENCE = ")\nSELECT fence FROM bump"
_REPLACE = (
    "DO UPDATE SET channel = excluded.channel, type = excluded.type, value = excluded.value, "
    "codec = excluded.codec, checksum = excluded.checksum, task_path = excluded.task_path, "
    "digest = excluded.digest"
)
WRITES_KEEP_PG = Statement(
    _pg(_WRITES_PG + "DO NOTHING" + _FENCE, **_IDS).columns(fence=BigInteger()),
    "lg_writes_keep_pg",
)
WRITES_REPLACE_PG = Statement(
    _pg(_WRITES_PG + _REPLACE + _FENCE, **_IDS).columns(fence=BigInteger()),
    "lg_writes_replace_pg",
)


# PostgreSQL: the blobs and the pending writes of checkpoints of one (thread, namespace),
# the rest of their keys as arrays: compiled once, and every key an index condition (a
# semi-join on unnest of all the keys was planned as a nested loop over the workspace's
# rows while the tables' statistics were young). Others: blobs_of / writes_of.
BLOBS_PG = Statement(
    _pg(
        """
SELECT ch.thread_id, ch.checkpoint_ns, ch.channel, ch.version, b.digest, b.type, b.codec,
       b.value
FROM lg_channels AS ch
JOIN lg_blobs AS b ON b.tenant_id = ch.tenant_id AND b.workspace_id = ch.workspace_id
     AND b.thread_id = ch.thread_id AND b.checkpoint_ns = ch.checkpoint_ns
     AND b.digest = ch.digest
WHERE ch.tenant_id = :tenant_id AND ch.workspace_id = :workspace_id
  AND ch.thread_id = :thread_id AND ch.checkpoint_ns = :checkpoint_ns
  AND (ch.channel, ch.version) IN (
      SELECT * FROM unnest(CAST(:channels AS text[]), CAST(:versions AS text[])))
""",
        **_IDS,
    ).columns(
        thread_id=Text(),
        checkpoint_ns=Text(),
        channel=Text(),
        version=Text(),
        digest=LargeBinary(),
        type=Text(),
        codec=Text(),
        value=LargeBinary(),
    ),
    "lg_blobs_pg",
    binary=True,
)
WRITES_OF_PG = Statement(
    _pg(
        """
SELECT w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx, w.channel, w.type,
       w.value, w.codec, w.checksum, w.task_path, w.digest, b.codec AS blob_codec,
       b.value AS blob_value
FROM lg_writes AS w
LEFT JOIN lg_blobs AS b ON b.tenant_id = w.tenant_id AND b.workspace_id = w.workspace_id
     AND b.thread_id = w.thread_id AND b.checkpoint_ns = w.checkpoint_ns
     AND b.digest = w.digest
WHERE w.tenant_id = :tenant_id AND w.workspace_id = :workspace_id
  AND w.thread_id = :thread_id AND w.checkpoint_ns = :checkpoint_ns
  AND w.checkpoint_id = ANY(CAST(:ids AS text[]))
ORDER BY w.task_path, w.task_id, w.idx
""",
        **_IDS,
    ).columns(
        thread_id=Text(),
        checkpoint_ns=Text(),
        checkpoint_id=Text(),
        task_id=Text(),
        idx=Integer(),
        channel=Text(),
        type=Text(),
        value=LargeBinary(),
        codec=Text(),
        checksum=LargeBinary(),
        task_path=Text(),
        digest=LargeBinary(),
        blob_codec=Text(),
        blob_value=LargeBinary(),
    ),
    "lg_writes_of_pg",
    binary=True,
)
