"""Input validation, cursors and row mapping of the state repository."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from persistence.codecs import validate_json
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.states import CHECKPOINT_NAME_LENGTH, STATE_ID_LENGTH, TAG_LENGTH
from persistence.records.states import Checkpoint, StateVersion

MAX_TAGS = 64
MAX_LIMIT = 1000

# -- validation -------------------------------------------------------------------


def state_id(value: object) -> str:
    """A state id: a str of 1-255 characters without NUL (PostgreSQL text cannot hold it)."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"state id must be a str, not {type(value).__name__}")
    if not value or len(value) > STATE_ID_LENGTH or "\x00" in value:
        raise InvalidInputError(
            f"invalid state id {value[:40]!r}: use 1-{STATE_ID_LENGTH} characters, no NUL"
        )
    return value


def tag_list(tags: object) -> tuple[str, ...]:
    """Tags: an iterable (not a str) of non-empty str of at most 100 chars; deduplicated."""
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise InvalidTypeError("tags must be a list or tuple of str")
    result: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidTypeError(f"tag {tag!r} is {type(tag).__name__}, not str")
        if not tag or len(tag) > TAG_LENGTH or "\x00" in tag:
            raise InvalidInputError(f"invalid tag {tag[:40]!r}: use 1-{TAG_LENGTH} characters")
        result[tag] = None
    if len(result) > MAX_TAGS:
        raise InvalidInputError(f"at most {MAX_TAGS} tags per version")
    return tuple(result)


def expiry(ttl: object, now: datetime) -> datetime | None:
    """``now + ttl`` for a TTL in seconds (int or float) or a timedelta; must be > 0."""
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise InvalidTypeError(f"ttl must be seconds or a timedelta, not {type(ttl).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInputError(f"ttl must be a positive, finite duration, not {ttl!r}")
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidInputError(f"ttl {ttl!r} is too large") from None


def user_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidTypeError(f"metadata must be a dict, not {type(value).__name__}")
    validate_json(value, what="metadata")
    return value


def count(value: object, what: str, *, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise InvalidInputError(f"{what} must be at least {minimum}{bound}, not {value}")
    return value


def checkpoint_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(f"checkpoint name must be a str, not {type(value).__name__}")
    if not value.strip() or len(value) > CHECKPOINT_NAME_LENGTH or "\x00" in value:
        raise InvalidInputError(
            f"invalid checkpoint name {value[:40]!r}: use 1-{CHECKPOINT_NAME_LENGTH} characters"
        )
    return value


# -- cursors (opaque, keyset) -----------------------------------------------------------


def encode_cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode()


def decode_cursor(cursor: str | None, kinds: Sequence[type]) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except Exception:
        values = None
    if (
        not isinstance(values, list)
        or len(values) != len(kinds)
        or not all(type(v) is k for v, k in zip(values, kinds, strict=True))
    ):
        raise InvalidInputError(f"invalid cursor {cursor[:40]!r}")
    return values


# -- row mapping --------------------------------------------------------------------------


def version_record(row: Any) -> StateVersion:
    """The metadata of a row of ``META_COLUMNS`` (by name)."""
    return StateVersion.of(
        state_id=row.state_id,
        version=row.version,
        parent_version=row.parent_version,
        created_at=row.created_at,
        expires_at=row.expires_at,
        raw_size=row.raw_size,
        stored_size=row.stored_size,
        codec=row.codec,
        checksum=row.checksum,
        tags=tuple(row.tags),
        metadata=row.metadata,
    )


def checkpoint_record(row: Any) -> Checkpoint:
    return Checkpoint.of(
        id=row.id,
        state_id=row.state_id,
        name=row.name,
        version=row.version,
        created_at=row.created_at,
        raw_size=row.raw_size,
        stored_size=row.stored_size,
        codec=row.codec,
        checksum=row.checksum,
        tags=tuple(row.tags),
        metadata=row.metadata,
    )
