"""What the checkpointer stores, in the form it is stored, for both the sync and async
saver: LangGraph's own serializer (``serde``) does the values; this module splits a
checkpoint into its row, its inline values and its blobs, checksums and compresses
them, and puts them back together on read, verifying every checksum."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from langgraph.checkpoint.base import WRITES_IDX_MAP, Checkpoint
from langgraph.checkpoint.serde.base import SerializerProtocol

from persistence.codecs import compress, decode, decompress, encode
from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.validation import validate_text

__all__ = [
    "Blob",
    "Encoding",
    "Row",
    "WriteRow",
    "blob_value",
    "checkpoint_of",
    "metadata_json",
    "missing_channels",
    "split_checkpoint",
    "validate_id",
    "write_rows",
    "write_value",
]

#: An inline channel value: a primitive whose serialized form is at most this long is
#: kept inside the checkpoint row (as LangGraph's own Postgres saver does) rather than
#: as a blob of its own, one row less to write and read.
INLINE_LIMIT = 256
_INLINE_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Encoding:
    """How payloads are compressed: a codec of :mod:`persistence.codecs` and the size
    under which a payload is stored as it is."""

    codec: str
    threshold: int


@dataclass(frozen=True, slots=True)
class Blob:
    digest: bytes
    type: str
    codec: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Row:
    """A checkpoint as its row stores it, with the blobs of the channels it changed."""

    type: str
    payload: bytes
    codec: str
    checksum: bytes
    versions: dict[str, Any]  # the checkpoint's channel_versions
    channels: dict[str, bytes | None]  # channel -> digest of its new version's blob
    blobs: dict[bytes, Blob]


@dataclass(frozen=True, slots=True)
class WriteRow:
    task_id: str
    idx: int
    channel: str
    type: str
    value: bytes
    codec: str
    checksum: bytes
    task_path: str
    digest: bytes | None = None  # the value is this blob (value empty)


#: A write whose serialized value is this long or longer is stored as a blob.
WRITE_BLOB = 256


#: Ids of the default length found valid before (the same channel names and task ids
#: come with every put): checked once. Bounded: past it, it starts over.
_VALID: set[str] = set()
_VALID_MAX = 4096


def validate_id(value: object, what: str, *, max_length: int = 512, empty: bool = False) -> str:
    """A thread id, namespace, checkpoint id, task id or channel name, checked before
    anything is written (it is part of a primary key: a btree entry has a size limit)."""
    if max_length == 512 and value.__class__ is str and value in _VALID:
        return value
    checked = _validated(value, what, max_length, empty)
    if max_length == 512 and checked:
        if len(_VALID) >= _VALID_MAX:
            _VALID.clear()
        _VALID.add(checked)
    return checked


def _validated(value: object, what: str, max_length: int, empty: bool) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and what == "thread_id":
        value = str(value)  # LangGraph lets a thread id be a number; it is text here
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(value).__name__}")
    if empty and value == "":
        return value
    return validate_text(value, what, max_length=max_length)


def _digest(type_: str, raw: bytes) -> bytes:
    return hashlib.sha256(type_.encode() + b"\0" + raw).digest()


def _blob(type_: str, raw: bytes, encoding: Encoding) -> Blob:
    chosen = encoding.codec if len(raw) >= encoding.threshold else "none"
    return Blob(_digest(type_, raw), type_, chosen, compress(raw, chosen))


def blob_value(serde: SerializerProtocol, blob: Blob, what: str) -> Any:
    """The value of a stored blob; DataCorruptionError if it is not what was written."""
    try:
        raw = decompress(blob.value, blob.codec)
    except DataCorruptionError as exc:
        raise DataCorruptionError(f"{what}: {exc}") from exc
    if _digest(blob.type, raw) != blob.digest:
        raise DataCorruptionError(f"{what}: checksum mismatch, the stored value was altered")
    return serde.loads_typed((blob.type, raw))


def _inline(serde: SerializerProtocol, value: Any) -> bool:
    if not isinstance(value, _INLINE_TYPES):
        return False
    return not isinstance(value, str) or len(value) <= INLINE_LIMIT


def split_checkpoint(
    serde: SerializerProtocol,
    checkpoint: Checkpoint,
    new_versions: Mapping[str, Any],
    encoding: Encoding,
) -> Row:
    """The row of ``checkpoint``: small primitive channel values inline, each channel
    of ``new_versions`` otherwise a blob (deduplicated by its digest)."""
    values: Mapping[str, Any] = checkpoint.get("channel_values") or {}
    inline = {k: v for k, v in values.items() if _inline(serde, v)}
    channels: dict[str, bytes | None] = {}
    blobs: dict[bytes, Blob] = {}
    for channel in new_versions:
        validate_id(channel, "channel name")
        if channel in inline:
            continue
        if channel not in values:  # emptied at this version: no row says so as well
            continue
        blob = _blob(*serde.dumps_typed(values[channel]), encoding)
        blobs[blob.digest] = blob
        channels[channel] = blob.digest
    versions = dict(checkpoint.get("channel_versions") or {})
    for channel, version in versions.items():
        validate_id(channel, "channel name")
        if not isinstance(version, (str, int, float)) or isinstance(version, bool):
            raise InvalidTypeError(f"channel version of {channel!r} must be a str, int or float")
        if isinstance(version, float) and not math.isfinite(version):
            raise InvalidInputError(
                f"channel version of {channel!r} is {version}: JSON holds no such number"
            )
    stored = {**checkpoint, "channel_values": inline}
    del stored["channel_versions"]
    type_, raw = serde.dumps_typed(stored)
    enc = encode(raw, codec=encoding.codec, threshold=encoding.threshold)
    digest = bytes.fromhex(enc.checksum)
    return Row(type_, enc.payload, enc.codec, digest, versions, channels, blobs)


def checkpoint_of(serde: SerializerProtocol, row: Any, what: str) -> Checkpoint:
    """The checkpoint of a stored row, with its inline channel values only: the others
    are the blobs of :func:`missing_channels`."""
    raw = decode(
        row.payload, codec=row.codec, expected_checksum=bytes(row.checksum).hex(), what=what
    )
    checkpoint: Checkpoint = serde.loads_typed((row.type, raw))
    checkpoint["channel_values"] = dict(checkpoint.get("channel_values") or {})
    checkpoint["channel_versions"] = orjson.loads(row.versions)
    return checkpoint


def missing_channels(checkpoint: Checkpoint) -> list[tuple[str, str]]:
    """The (channel, version) pairs of ``checkpoint`` whose value is not inline: the
    blobs to read (a pair without a blob is a channel emptied at that version)."""
    inline = checkpoint["channel_values"]
    return [(ch, str(v)) for ch, v in checkpoint["channel_versions"].items() if ch not in inline]


def metadata_json(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` as stored (JSON, so ``list(filter=...)`` runs in the database);
    InvalidInputError for a value JSON cannot hold exactly."""
    try:
        text = orjson.dumps(metadata)
    except TypeError as exc:
        raise InvalidInputError(f"checkpoint metadata must be JSON: {exc}") from None
    if b"\\u0000" in text:
        raise InvalidInputError("checkpoint metadata holds a NUL character, which is not storable")
    loaded: dict[str, Any] = orjson.loads(text)
    if loaded != _listed(metadata):
        raise InvalidInputError("checkpoint metadata does not round-trip through JSON exactly")
    return loaded


def _listed(value: Any) -> Any:
    """``value`` with its tuples as lists: how JSON (and so every LangGraph saver storing
    metadata as JSON) gives them back; LangGraph's own metadata holds tuples."""
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listed(v) for v in value]
    return value


def write_value(serde: SerializerProtocol, row: Any, what: str) -> Any:
    """A stored write's value (its blob's, for a large one), every checksum verified."""
    if row.digest is not None:
        if row.blob_value is None:
            raise DataCorruptionError(f"{what}: its value's blob is missing")
        blob = Blob(row.digest, row.type, row.blob_codec, row.blob_value)
        return blob_value(serde, blob, what)
    raw = decode(row.value, codec=row.codec, expected_checksum=bytes(row.checksum).hex(), what=what)
    return serde.loads_typed((row.type, raw))


def write_rows(
    serde: SerializerProtocol,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    encoding: Encoding,
) -> tuple[list[WriteRow], dict[bytes, Blob]]:
    """The rows of one task's writes: regular writes at their index, the special ones
    (error, interrupt, scheduled, resume) at LangGraph's negative indexes; a large value
    as a blob (returned beside, deduplicated by digest)."""
    validate_id(task_id, "task_id")
    if not isinstance(task_path, str):
        raise InvalidTypeError(f"task_path must be a str, not {type(task_path).__name__}")
    rows, blobs = [], {}
    for idx, (channel, value) in enumerate(writes):
        validate_id(channel, "channel name")
        type_, raw = serde.dumps_typed(value)
        index = WRITES_IDX_MAP.get(channel, idx)
        if len(raw) >= WRITE_BLOB:
            blob = _blob(type_, raw, encoding)
            blobs[blob.digest] = blob
            rows.append(
                WriteRow(task_id, index, channel, type_, b"", "none", b"", task_path, blob.digest)
            )
            continue
        enc = encode(raw, codec=encoding.codec, threshold=encoding.threshold)
        payload, codec, digest = enc.payload, enc.codec, bytes.fromhex(enc.checksum)
        rows.append(WriteRow(task_id, index, channel, type_, payload, codec, digest, task_path))
    return rows, blobs
