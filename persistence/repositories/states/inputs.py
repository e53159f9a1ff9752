"""Input validation, cursors and row mapping of the state repository."""

from __future__ import annotations

import uuid
from typing import Any, Literal, cast

from persistence._cursor import decode_cursor as decode_cursor
from persistence._cursor import encode_cursor as encode_cursor
from persistence.codecs import MAX_JSON_DEPTH, validate_metadata
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.states import CHECKPOINT_NAME_LENGTH, STATE_ID_LENGTH, TAG_LENGTH
from persistence.records.states import Checkpoint, StateVersion
from persistence.settings import Settings
from persistence.validation import count as count
from persistence.validation import expiry as expiry
from persistence.validation import shown, text_list, validate_text

MAX_TAGS = 64
MAX_LIMIT = 1000

# -- validation (the rules live in persistence.validation and persistence.codecs) ------


def state_id(value: object) -> str:
    """A state id: a str of 1-255 characters without NUL or lone surrogates."""
    return validate_text(value, "state id", max_length=STATE_ID_LENGTH)


def tag_list(tags: object) -> tuple[str, ...]:
    """Tags: an iterable (not a str) of non-empty str of at most 100 chars; deduplicated."""
    return text_list(tags, item="tag", max_length=TAG_LENGTH, max_items=MAX_TAGS)


def user_metadata(value: object, settings: Settings | None = None) -> dict[str, Any]:
    """Metadata of a version or checkpoint: ``None`` or a dict of exact JSON."""
    depth = MAX_JSON_DEPTH if settings is None else settings.max_json_depth
    return validate_metadata(value, what="metadata", max_depth=depth)


def checkpoint_id(value: object) -> uuid.UUID:
    """A checkpoint id: a UUID, or its str."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise InvalidTypeError(f"checkpoint id must be a UUID or str, not {type(value).__name__}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInputError(f"invalid checkpoint id {shown(value)}") from None


def match_mode(value: object) -> Literal["all", "any"]:
    if not isinstance(value, str):
        raise InvalidTypeError(f"match must be 'all' or 'any', not {type(value).__name__}")
    if value not in ("all", "any"):
        raise InvalidInputError(f"match must be 'all' or 'any', not {shown(value)}")
    return cast(Literal["all", "any"], value)


def checkpoint_name(value: object) -> str:
    name = validate_text(value, "checkpoint name", max_length=CHECKPOINT_NAME_LENGTH)
    if not name.strip():
        raise InvalidInputError("checkpoint name must not be blank")
    return name


# -- row mapping --------------------------------------------------------------------------


def version_record(row: Any) -> StateVersion:
    """The metadata of a row of ``META_COLUMNS`` (by name)."""
    return StateVersion.from_row(row, tags=tuple(row.tags))


def checkpoint_record(row: Any) -> Checkpoint:
    """A checkpoint of a row of the checkpoints table (by name)."""
    return Checkpoint.from_row(row, tags=tuple(row.tags))
