"""Input validation, prebuilt statements and row mapping for the state repository."""

from __future__ import annotations

import functools
import uuid
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import KeyedColumnElement

from persistence._cursor import decode_cursor as decode_cursor
from persistence._cursor import encode_cursor as encode_cursor
from persistence.codecs import MAX_JSON_DEPTH, validate_metadata
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.base import UTCDateTime
from persistence.models.states import (
    CHECKPOINT_NAME_LENGTH,
    STATE_ID_LENGTH,
    TAG_LENGTH,
    StateCheckpoint,
    StateHead,
    StateTag,
    StateVersionRow,
)
from persistence.records.states import Checkpoint, StateVersion
from persistence.settings import Settings
from persistence.validation import count as count
from persistence.validation import expiry as expiry
from persistence.validation import shown, text_list, validate_text

HEAD = cast(Table, StateHead.__table__)
VER = cast(Table, StateVersionRow.__table__)
TAG = cast(Table, StateTag.__table__)
CKPT = cast(Table, StateCheckpoint.__table__)

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


# -- statements -------------------------------------------------------------------------

META_COLUMNS: tuple[KeyedColumnElement[Any], ...] = (
    VER.c.state_id,
    VER.c.version,
    VER.c.parent_version,
    VER.c.created_at,
    VER.c.expires_at,
    VER.c.raw_size,
    VER.c.stored_size,
    VER.c.codec,
    VER.c.checksum,
    VER.c.tags,
    VER.c.metadata,
)
_NOW = bindparam("now", type_=UTCDateTime())


def alive(table: Any, now: Any = _NOW) -> ColumnElement[bool]:
    """Not expired (no expiry, or an expiry in the future)."""
    return or_(table.c.expires_at.is_(None), table.c.expires_at > now)


def scoped(table: Any) -> ColumnElement[bool]:
    return and_(
        table.c.tenant_id == bindparam("p_tenant"),
        table.c.workspace_id == bindparam("p_workspace"),
    )


def head_join_latest() -> ColumnElement[bool]:
    return and_(
        VER.c.tenant_id == HEAD.c.tenant_id,
        VER.c.workspace_id == HEAD.c.workspace_id,
        VER.c.state_id == HEAD.c.state_id,
        VER.c.version == HEAD.c.latest_version,
    )


def head_join_state() -> ColumnElement[bool]:
    return and_(
        VER.c.tenant_id == HEAD.c.tenant_id,
        VER.c.workspace_id == HEAD.c.workspace_id,
        VER.c.state_id == HEAD.c.state_id,
    )


# Both loads are one primary-key lookup of the head joined to one version by primary key.
LOAD_LATEST = (
    select(*META_COLUMNS, VER.c.payload)
    .select_from(HEAD.join(VER, head_join_latest()))
    .where(scoped(HEAD), HEAD.c.state_id == bindparam("p_state"), alive(HEAD))
)
LOAD_VERSION = (
    select(*META_COLUMNS, VER.c.payload)
    .select_from(HEAD.join(VER, head_join_state()))
    .where(
        scoped(HEAD),
        HEAD.c.state_id == bindparam("p_state"),
        VER.c.version == bindparam("version"),
        alive(HEAD),
        alive(VER),
    )
)
INSERT_VERSION = VER.insert()
INSERT_TAGS = TAG.insert()


def dialect_insert(dialect: str, table: Any) -> Any:
    """INSERT with ON CONFLICT support on both backends."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


def current_version() -> ColumnElement[int]:
    """The head's visible latest version: 0 when deleted or expired."""
    return case(
        (and_(HEAD.c.latest_version.is_not(None), alive(HEAD)), HEAD.c.latest_version),
        else_=0,
    )


_V_EXPIRES = bindparam("v_expires", type_=UTCDateTime())
_V_NOW = bindparam("v_now", type_=UTCDateTime())


def _advance_values() -> dict[str, Any]:
    """SET clause that assigns the next number (old values on the right-hand side)."""
    following = HEAD.c.last_version + 1
    return {
        "last_version": following,
        "latest_version": following,
        "parent_version": func.nullif(current_version(), 0),
        "expires_at": _V_EXPIRES,
        "updated_at": _V_NOW,
    }


def advance_mode(expected: int | None) -> str:
    """How a save takes its version number: "any" (no ``expected_version``), "absent"
    (``expected_version=0``) or "expected" (the latest must be ``expected_version``)."""
    return "any" if expected is None else "absent" if expected == 0 else "expected"


@functools.cache
def advance_head(dialect: str, mode: str) -> Any:
    """The one statement that takes the next version number on the head row (locking it)
    and returns ``(last_version, parent_version)``; no row when ``expected`` fails.

    ``mode`` "any": insert at 1 or advance. "absent": the same, but advance only when
    the state has no live version (expected_version=0). "expected": advance only when
    the live latest version equals ``v_expected`` (the row must exist). Built once per
    dialect and mode; parameters: v_tenant, v_workspace, v_state, v_expires, v_now, now,
    p_tenant, p_workspace, p_state, v_expected.
    """
    returning = (HEAD.c.last_version, HEAD.c.parent_version)
    if mode == "expected":
        return (
            update(HEAD)
            .where(head_key(), current_version() == bindparam("v_expected"))
            .values(_advance_values())
            .returning(*returning)
        )
    stmt = dialect_insert(dialect, HEAD).values(
        tenant_id=bindparam("v_tenant", type_=Uuid()),
        workspace_id=bindparam("v_workspace", type_=Uuid()),
        state_id=bindparam("v_state", type_=String()),
        last_version=1,
        latest_version=1,
        parent_version=None,
        expires_at=_V_EXPIRES,
        updated_at=_V_NOW,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[HEAD.c.tenant_id, HEAD.c.workspace_id, HEAD.c.state_id],
        set_=_advance_values(),
        where=(current_version() == 0) if mode == "absent" else None,
    )
    return stmt.returning(*returning)


def head_key() -> ColumnElement[bool]:
    return and_(scoped(HEAD), HEAD.c.state_id == bindparam("p_state"))


def prune(keep: int) -> Any:
    """Delete every version of the state but the ``keep`` newest."""
    same_state = and_(scoped(VER), VER.c.state_id == bindparam("p_state"))
    cutoff = (
        select(VER.c.version)
        .where(same_state)
        .order_by(VER.c.version.desc())
        .limit(1)
        .offset(keep - 1)
        .scalar_subquery()
    )
    return delete(VER).where(same_state, VER.c.version < cutoff)


# -- row mapping --------------------------------------------------------------------------


def version_record(row: Any) -> StateVersion:
    return StateVersion.model_construct(
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
    return Checkpoint.model_construct(
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
