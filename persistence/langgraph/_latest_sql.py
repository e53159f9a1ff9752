"""PostgreSQL: the latest checkpoint of a (thread, namespace) with its fence, the blobs of
its channel versions and its pending writes, in one statement (one round trip, which
can carry the unit of work's ``COMMIT``), and the split of its rows into what
:class:`~persistence.langgraph._stored.Stored` holds. SQLite reads it in three
(``GET_LATEST``, then ``blobs_of`` and ``writes_of``).

Every row has one shape, its ``kind`` saying what it is; the other columns by kind:

============  ===============  =========  ============
column        0 checkpoint     1 blob     2 write
============  ===============  =========  ============
k1            checkpoint_id    channel    task_id
k2            parent_id        version    channel
type, codec   its own          its own    its own
t1            versions         -          task_path
t2            metadata         -          blob_codec
value         payload          value      value
checksum      checksum         -          checksum
digest        -                digest     digest
blob_value    -                -          blob_value
n             fence            -          idx
============  ===============  =========  ============

The checkpoint row comes first, then its blobs, then its writes in the order LangGraph
applies them (``task_path, task_id, idx``, as ``WRITES_OF_PG``); no checkpoint: no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, Text, Uuid, bindparam, text

from persistence._compiled import Statement
from persistence.langgraph._stored import BlobRow, CheckpointRow, Stored, WriteRow

__all__ = ["LATEST_PG", "split"]

# ``keys``: each (channel, version) of the checkpoint as lg_channels holds it (Python's
# ``str`` of the version, as the put wrote it and ``BLOBS_PG`` looks it up): the JSON
# text of a string or an int is that; a float's is not always (JSON 0.00001, Python
# 1e-05), so a float is found by its value among the channel's versions.
_SQL = """
WITH cp AS (
    SELECT c.checkpoint_id, c.parent_id, c.type, c.payload, c.codec, c.checksum, c.versions,
           c.metadata,
           (SELECT t.fence FROM lg_threads AS t
            WHERE t.tenant_id = :tenant_id AND t.workspace_id = :workspace_id
              AND t.thread_id = :thread_id AND t.checkpoint_ns = :checkpoint_ns) AS fence
    FROM lg_checkpoints AS c
    WHERE c.tenant_id = :tenant_id AND c.workspace_id = :workspace_id
      AND c.thread_id = :thread_id AND c.checkpoint_ns = :checkpoint_ns
    ORDER BY c.checkpoint_id DESC
    LIMIT 1
), keys AS MATERIALIZED (
    SELECT e.key AS channel,
           CASE WHEN json_typeof(e.value) = 'number' AND CAST(e.value AS text) ~ '[.eE]'
                THEN (SELECT f.version FROM lg_channels AS f
                      WHERE f.tenant_id = :tenant_id AND f.workspace_id = :workspace_id
                        AND f.thread_id = :thread_id AND f.checkpoint_ns = :checkpoint_ns
                        AND f.channel = e.key
                        AND CASE WHEN f.version ~ '^-?[0-9]+([.][0-9]+)?(e[-+][0-9]+)?$'
                                 THEN CAST(f.version AS float8) END
                            = CAST(CAST(e.value AS text) AS float8)
                      LIMIT 1)
                ELSE e.value #>> '{}'
           END AS version
    FROM cp, json_each(CAST(cp.versions AS json)) AS e
)
SELECT 0 AS kind, cp.checkpoint_id AS k1, cp.parent_id AS k2, cp.type, cp.codec,
       cp.versions AS t1, cp.metadata AS t2, cp.payload AS value, cp.checksum,
       CAST(NULL AS bytea) AS digest, CAST(NULL AS bytea) AS blob_value,
       cp.fence AS n
FROM cp
UNION ALL
SELECT 1, k.channel, ch.version, b.type, b.codec, NULL, NULL, b.value, NULL, ch.digest, NULL,
       NULL
FROM keys AS k
CROSS JOIN LATERAL (
    SELECT ch.version, ch.digest FROM lg_channels AS ch
    WHERE ch.tenant_id = :tenant_id AND ch.workspace_id = :workspace_id
      AND ch.thread_id = :thread_id AND ch.checkpoint_ns = :checkpoint_ns
      AND ch.channel = k.channel AND ch.version = k.version
    LIMIT 1
) AS ch
CROSS JOIN LATERAL (
    SELECT b.type, b.codec, b.value FROM lg_blobs AS b
    WHERE b.tenant_id = :tenant_id AND b.workspace_id = :workspace_id
      AND b.thread_id = :thread_id AND b.checkpoint_ns = :checkpoint_ns
      AND b.digest = ch.digest
    LIMIT 1
) AS b
UNION ALL
SELECT 2, w.task_id, w.channel, w.type, w.codec, w.task_path, b.codec, w.value, w.checksum,
       w.digest, b.value, w.idx
FROM lg_writes AS w
LEFT JOIN LATERAL (
    SELECT b.codec, b.value FROM lg_blobs AS b
    WHERE b.tenant_id = :tenant_id AND b.workspace_id = :workspace_id
      AND b.thread_id = :thread_id AND b.checkpoint_ns = :checkpoint_ns
      AND b.digest = w.digest
    LIMIT 1
) AS b ON true
WHERE w.tenant_id = :tenant_id AND w.workspace_id = :workspace_id
  AND w.thread_id = :thread_id AND w.checkpoint_ns = :checkpoint_ns
  AND w.checkpoint_id = (SELECT cp.checkpoint_id FROM cp)
ORDER BY kind, t1, k1, n
"""

LATEST_PG = Statement(
    text(_SQL)
    .bindparams(bindparam("tenant_id", type_=Uuid()), bindparam("workspace_id", type_=Uuid()))
    .columns(
        kind=Integer(),
        k1=Text(),
        k2=Text(),
        type=Text(),
        codec=Text(),
        t1=Text(),
        t2=Text(),
        value=LargeBinary(),
        checksum=LargeBinary(),
        digest=LargeBinary(),
        blob_value=LargeBinary(),
        n=BigInteger(),
    ),
    "lg_latest_pg",
    binary=True,
)


def split(rows: Sequence[Any], thread_id: str, ns: str) -> tuple[Stored | None, int | None]:
    """The rows of :data:`LATEST_PG` as what ``Stored`` holds (None: no checkpoint), and
    the fence of the (thread, namespace) they were read at."""
    if not rows:
        return None, None
    head = rows[0]
    checkpoint_id = head.k1
    checkpoint = CheckpointRow(
        thread_id,
        ns,
        checkpoint_id,
        head.k2,
        head.type,
        head.value,
        head.codec,
        head.checksum,
        head.t1,
        head.t2,
    )
    blobs, writes = [], []
    for r in rows[1:]:
        if r.kind == 1:
            blobs.append(BlobRow(thread_id, ns, r.k1, r.k2, r.digest, r.type, r.codec, r.value))
        else:
            writes.append(
                WriteRow(
                    thread_id,
                    ns,
                    checkpoint_id,
                    r.k1,
                    r.n,
                    r.k2,
                    r.type,
                    r.value,
                    r.codec,
                    r.checksum,
                    r.t1,
                    r.digest,
                    r.t2,
                    r.blob_value,
                )
            )
    return Stored([checkpoint], blobs, writes), head.n
