"""The parameters of the PostgreSQL statements that write a whole put, or a task's
writes, in one statement: each batch of rows as a few binary arrays
(``persistence._pg_arrays``), the statement unnesting them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from persistence._pg_arrays import bigint_array, bytea_array, text_array
from persistence.langgraph._serial import Blob, WriteRow

__all__ = ["blob_arrays", "channel_arrays", "write_arrays"]


def blob_arrays(blobs: Iterable[Blob]) -> dict[str, Any]:
    """Blob rows (``:blob_digests``, ``:blob_types``, ``:blob_codecs``, ``:blob_values``)."""
    listed = list(blobs)
    return {
        "blob_digests": bytea_array([b.digest for b in listed]),
        "blob_types": text_array([b.type for b in listed]),
        "blob_codecs": text_array([b.codec for b in listed]),
        "blob_values": bytea_array([b.value for b in listed]),
    }


def channel_arrays(channels: Sequence[tuple[str, str, bytes | None]]) -> dict[str, Any]:
    """(channel, version, digest) rows of a put."""
    return {
        "channel_names": text_array([c for c, _, _ in channels]),
        "channel_versions": text_array([v for _, v, _ in channels]),
        "channel_digests": bytea_array([d for _, _, d in channels]),
    }


def write_arrays(rows: Sequence[WriteRow], blobs: Iterable[Blob]) -> dict[str, Any]:
    """One task's write rows (and the blobs of its large values)."""
    assert len({(w.task_id, w.task_path) for w in rows}) == 1  # one task's writes
    return {
        "task_id": rows[0].task_id,
        "task_path": rows[0].task_path,
        "idxs": bigint_array([w.idx for w in rows]),
        "channels": text_array([w.channel for w in rows]),
        "types": text_array([w.type for w in rows]),
        "values": bytea_array([w.value for w in rows]),
        "codecs": text_array([w.codec for w in rows]),
        "checksums": bytea_array([w.checksum for w in rows]),
        "digests": bytea_array([w.digest for w in rows]),
        **blob_arrays(blobs),
    }
