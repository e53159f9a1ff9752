"""Checkpoints as read from the database, before LangGraph's serializer sees them: the
rows of some checkpoints, of their blobs and of their pending writes. What the read
cache holds of a (thread, namespace)'s latest checkpoint is one of these, packed; every
payload in it keeps its checksum, verified when the saver decodes it."""

from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ormsgpack

from persistence.cache import Kind
from persistence.errors import DataCorruptionError

__all__ = ["LATEST", "Stored", "latest_key", "pack", "unpack"]

CheckpointRow = namedtuple(
    "CheckpointRow",
    "thread_id checkpoint_ns checkpoint_id parent_id type payload codec checksum versions metadata",
)
BlobRow = namedtuple("BlobRow", "thread_id checkpoint_ns channel version digest type codec value")
WriteRow = namedtuple(
    "WriteRow",
    "thread_id checkpoint_ns checkpoint_id task_id idx channel type value codec checksum task_path "
    "digest blob_codec blob_value",
)


@dataclass(frozen=True, slots=True)
class Stored:
    rows: Sequence[Any]  # checkpoint rows (CHECKPOINT_ROW)
    blobs: Sequence[Any]  # blob rows of their channel versions (blobs_of)
    writes: Sequence[Any]  # their pending writes, in apply order (writes_of)


#: The latest checkpoint of a (thread, namespace), versioned by its thread row's fence
#: (every put and put_writes of the namespace raises it).
LATEST = Kind("lg-latest", pack=lambda meta: b"", unpack=lambda raw: None)


def latest_key(workspace_id: uuid.UUID, thread_id: str, ns: str) -> str:
    return f"lg:{workspace_id}:{len(thread_id)}:{thread_id}:{ns}"


def pack(stored: Stored) -> bytes:
    """The rows' fields by name (a row may carry more, the fence beside a checkpoint)."""
    return ormsgpack.packb(
        [
            [[getattr(r, f) for f in CheckpointRow._fields] for r in stored.rows],
            [[getattr(b, f) for f in BlobRow._fields] for b in stored.blobs],
            [[getattr(w, f) for f in WriteRow._fields] for w in stored.writes],
        ]
    )


def unpack(data: bytes) -> Stored:
    try:
        rows, blobs, writes = ormsgpack.unpackb(data)
        return Stored(
            [CheckpointRow(*r) for r in rows],
            [BlobRow(*b) for b in blobs],
            [WriteRow(*w) for w in writes],
        )
    except (ormsgpack.MsgpackDecodeError, TypeError, ValueError) as exc:
        raise DataCorruptionError(f"a cached checkpoint cannot be read: {exc}") from exc
