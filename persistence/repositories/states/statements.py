"""Every statement of the state repository, defined once in SQLAlchemy Core.

Both backends run these through :mod:`persistence._executor`. The branches that remain:

* A save on PostgreSQL is one statement: the head upsert, the version insert and the tag
  insert composed as data-modifying CTEs (:data:`SAVE`). SQLite has no data-modifying
  CTE, so it runs the same three pieces one after the other (:data:`ADVANCE`,
  :data:`INSERT_VERSION`, :data:`INSERT_TAGS`) inside its ``BEGIN IMMEDIATE``
  transaction, which already serializes writers.
* A JSON list of tags becomes rows through each backend's own table function
  (``json_array_elements_text`` on PostgreSQL, ``json_each`` on SQLite).

The hot reads resolve the version number in an uncorrelated scalar subquery over the
head's primary key, so the version lookup is always an index condition on
``pk_state_versions``, whatever the planner's statistics (a join could be planned as a
scan of every version of the state before ``ANALYZE``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql import ClauseElement

from persistence._executor import Statement
from persistence.models.base import UTCDateTime
from persistence.models.states import StateCheckpoint, StateHead, StateTag, StateVersionRow
from persistence.repositories._sql import NOW, TENANT, WORKSPACE, bound_row, scoped, upsert

HEAD = cast(Table, StateHead.__table__)
VER = cast(Table, StateVersionRow.__table__)
TAG = cast(Table, StateTag.__table__)
CKPT = cast(Table, StateCheckpoint.__table__)

# Besides the scope's parameters (persistence.repositories._sql), most take a state id.
STATE = bindparam("state_id", type_=String())
EXPIRES = bindparam("expires_at", type_=UTCDateTime())
VERSION = bindparam("version", type_=Integer())

META_COLUMNS = (
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


def of_state(table: Any) -> ColumnElement[bool]:
    return and_(scoped(table), table.c.state_id == STATE)


def alive(table: Any, now: Any = NOW) -> ColumnElement[bool]:
    """Not expired (no expiry, or an expiry in the future)."""
    return or_(table.c.expires_at.is_(None), table.c.expires_at > now)


def head_join_state() -> ColumnElement[bool]:
    return and_(
        VER.c.tenant_id == HEAD.c.tenant_id,
        VER.c.workspace_id == HEAD.c.workspace_id,
        VER.c.state_id == HEAD.c.state_id,
    )


def head_join_latest() -> ColumnElement[bool]:
    return and_(head_join_state(), VER.c.version == HEAD.c.latest_version)


def current_version() -> ColumnElement[int]:
    """The head's visible latest version: 0 when deleted or expired."""
    return case(
        (and_(HEAD.c.latest_version.is_not(None), alive(HEAD)), HEAD.c.latest_version),
        else_=literal_column("0"),
    )


def _stmt(name: str, clause: ClauseElement) -> Statement:
    return Statement(clause, f"states_{name}")


# -- reads ------------------------------------------------------------------------------

_LATEST = select(HEAD.c.latest_version).where(of_state(HEAD), alive(HEAD)).scalar_subquery()

LOAD_LATEST = _stmt(
    "load_latest",
    select(*META_COLUMNS, VER.c.payload).where(of_state(VER), VER.c.version == _LATEST),
)
LOAD_VERSION = _stmt(
    "load_version",
    # (the head's expiry: a version of a state that may expire is never cached)
    select(*META_COLUMNS, VER.c.payload, HEAD.c.expires_at.label("head_expires_at"))
    .select_from(HEAD.join(VER, head_join_state()))
    .where(of_state(VER), VER.c.version == VERSION, alive(VER), alive(HEAD)),
)
CURRENT = _stmt("current", select(current_version().label("current")).where(of_state(HEAD)))
HEAD_LATEST = _stmt("head_latest", select(HEAD.c.latest_version).where(of_state(HEAD)))

# -- the save: head, version, tags ------------------------------------------------------------


def _advance_values() -> dict[str, Any]:
    """SET clause that assigns the next number (old values on the right-hand side)."""
    following = HEAD.c.last_version + literal_column("1")
    return {
        "last_version": following,
        "latest_version": following,
        "parent_version": func.nullif(current_version(), literal_column("0")),
        "expires_at": EXPIRES,
        "updated_at": NOW,
    }


def _advance(mode: str) -> Any:
    """The statement that takes the next version number on the head row (locking it) and
    returns ``(last_version, parent_version)``; no row when ``expected_version`` fails.

    ``mode`` "any": insert at 1 or advance. "absent": the same, but advance only when the
    state has no live version (expected_version=0). "expected": advance only when the
    live latest version equals the ``expected`` parameter (the row must exist).
    """
    returning = (HEAD.c.last_version, HEAD.c.parent_version)
    if mode == "expected":
        expected = bindparam("expected", type_=Integer())
        return (
            update(HEAD)
            .where(of_state(HEAD), current_version() == expected)
            .values(_advance_values())
            .returning(*returning)
        )
    stmt = upsert(HEAD).values(
        tenant_id=TENANT,
        workspace_id=WORKSPACE,
        state_id=STATE,
        last_version=literal_column("1"),
        latest_version=literal_column("1"),
        parent_version=None,
        expires_at=EXPIRES,
        updated_at=NOW,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[HEAD.c.tenant_id, HEAD.c.workspace_id, HEAD.c.state_id],
        set_=_advance_values(),
        where=(current_version() == literal_column("0")) if mode == "absent" else None,
    )
    return stmt.returning(*returning)


MODES = ("any", "absent", "expected")


def advance_mode(expected: int | None) -> str:
    """How a save takes its version number: "any" (no ``expected_version``), "absent"
    (``expected_version=0``) or "expected" (the latest must be ``expected_version``)."""
    return "any" if expected is None else "absent" if expected == 0 else "expected"


ADVANCE = {mode: _stmt(f"advance_{mode}", _advance(mode)) for mode in MODES}

_VERSION_VALUES: dict[str, Any] = {
    "created_at": NOW,
    "expires_at": EXPIRES,
    "raw_size": bindparam("raw_size", type_=Integer()),
    "stored_size": bindparam("stored_size", type_=Integer()),
    "codec": bindparam("codec", type_=String()),
    "checksum": bindparam("checksum", type_=String()),
    "tags": bindparam("tags", type_=JSON()),
    "metadata": bindparam("metadata", type_=JSON()),
    "payload": bindparam("payload", type_=VER.c.payload.type),
}


def _insert_version(head: Any) -> Any:
    """INSERT the version numbered by ``head`` (a selectable of ``last_version`` and
    ``parent_version``): the save CTE's head on PostgreSQL, bound numbers on SQLite."""
    columns = ["tenant_id", "workspace_id", "state_id", "version", "parent_version"]
    source = select(
        TENANT,
        WORKSPACE,
        STATE,
        head.c.last_version,
        head.c.parent_version,
        *_VERSION_VALUES.values(),
    ).select_from(head)
    return insert(VER).from_select([*columns, *_VERSION_VALUES], source)


_TAG_ROWS: dict[str, Callable[[Any], Any]] = {
    "postgresql": lambda tags: func.json_array_elements_text(tags.cast(JSON())),
    "sqlite": lambda tags: func.json_each(tags),
}


def _insert_tags(head: Any, dialect: str) -> Any:
    """INSERT one tag row per element of the JSON list ``tag_list`` for ``head``'s version."""
    elements = _TAG_ROWS[dialect](bindparam("tag_list", type_=Text())).table_valued("value")
    source = (
        select(TENANT, WORKSPACE, elements.c.value, STATE, head.c.last_version)
        .select_from(head)
        .join(elements, literal_column("1") == literal_column("1"))
    )
    columns = ["tenant_id", "workspace_id", "tag", "state_id", "version"]
    return insert(TAG).from_select(columns, source)


def _bound_head() -> Any:
    """The version numbers as parameters (SQLite: taken by ADVANCE beforehand)."""
    return bound_row("head", last_version=Integer(), parent_version=Integer())


def _save(mode: str, *, tagged: bool) -> Any:
    """PostgreSQL: head, version and (``tagged``) tags in one statement; the numbers."""
    head = _advance(mode).cte("head")
    ctes = [_insert_version(head).cte("version")]
    if tagged:
        ctes.append(_insert_tags(head, "postgresql").cte("tag"))
    return select(head.c.last_version, head.c.parent_version).add_cte(*ctes)


SAVE = {mode: _stmt(f"save_{mode}", _save(mode, tagged=True)) for mode in MODES}
# Most saves carry no tag: without the tag CTE the server skips its JSON parse and its
# empty insert (about 60 µs a save, measured on the benchmark's machine).
SAVE_UNTAGGED = {mode: _stmt(f"save_untagged_{mode}", _save(mode, tagged=False)) for mode in MODES}
INSERT_VERSION = _stmt("insert_version", _insert_version(_bound_head()))
INSERT_TAGS = _stmt("insert_tags", _insert_tags(_bound_head(), "sqlite"))


def _prune() -> Any:
    """Delete every version of the state but the ``keep`` newest."""
    cutoff = (
        select(VER.c.version)
        .where(of_state(VER))
        .order_by(VER.c.version.desc())
        .limit(literal_column("1"))
        .offset(bindparam("skip", type_=Integer()))
        .scalar_subquery()
    )
    return delete(VER).where(of_state(VER), VER.c.version < cutoff)


PRUNE = _stmt("prune", _prune())
DROP_VERSIONS_BEFORE = _stmt(
    "drop_versions_before", delete(VER).where(of_state(VER), VER.c.version < VERSION)
)
DROP_VERSIONS = _stmt("drop_versions", delete(VER).where(of_state(VER)))
DROP_CHECKPOINTS = _stmt("drop_checkpoints", delete(CKPT).where(of_state(CKPT)))

# -- deleting ------------------------------------------------------------------------------

DELETE_VERSION = _stmt(
    "delete_version",
    delete(VER).where(of_state(VER), VER.c.version == VERSION).returning(VER.c.version),
)
NEWEST = _stmt(
    "newest",
    select(VER.c.version, VER.c.parent_version, VER.c.expires_at)
    .where(of_state(VER))
    .order_by(VER.c.version.desc())
    .limit(literal_column("1")),
)
REPOINT_HEAD = _stmt(
    "repoint_head",
    update(HEAD)
    .where(of_state(HEAD), HEAD.c.latest_version == VERSION)
    .values(
        latest_version=bindparam("latest", type_=Integer()),
        parent_version=bindparam("parent", type_=Integer()),
        expires_at=EXPIRES,
        updated_at=NOW,
    ),
)
CLEAR_HEAD = _stmt(
    "clear_head",
    update(HEAD)
    .where(of_state(HEAD))
    .values(latest_version=None, parent_version=None, expires_at=None),
)
