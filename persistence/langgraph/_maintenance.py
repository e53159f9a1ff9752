"""Statements of the checkpointer's maintenance: copying a thread, and removing what no
checkpoint refers to any more after a prune (channel versions, then blobs)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Float,
    Table,
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import delete as delete_from
from sqlalchemy.dialects.postgresql import JSONB

from persistence.langgraph._statements import (
    BLOBS,
    CHANNELS,
    CHECKPOINTS,
    THREADS,
    WRITES,
    in_thread,
    in_thread_renamed,
)
from persistence.repositories._sql import TENANT, WORKSPACE

__all__ = [
    "any_checkpoint",
    "chain_rows",
    "copy_rows",
    "crowded",
    "idle_threads",
    "orphans",
    "reset_head",
    "valued_channels",
]


def chain_rows() -> Any:
    """The checkpoints of one (thread, namespace), for a prune to walk."""
    c = CHECKPOINTS.c
    return select(
        c.thread_id,
        c.checkpoint_ns,
        c.checkpoint_id,
        c.parent_id,
        c.type,
        c.payload,
        c.codec,
        c.checksum,
        c.versions,
        c["metadata"],
    ).where(in_thread(CHECKPOINTS))


def valued_channels() -> Any:
    """The (channel, version) pairs of one (thread, namespace) that hold a value."""
    c = CHANNELS.c
    return select(c.channel, c.version).where(in_thread(CHANNELS), c.digest.is_not(None))


def any_checkpoint() -> Any:
    c = CHECKPOINTS.c
    return (
        select(literal(1))
        .where(
            c.tenant_id == TENANT, c.workspace_id == WORKSPACE, c.thread_id == bindparam("thread")
        )
        .limit(1)
    )


def copy_rows(table: Table) -> Any:
    """``INSERT ... SELECT`` of thread ``:source``'s rows of ``table`` as thread ``:target``."""
    c = table.c
    names = [column.name for column in c]
    selected = [
        bindparam("target").label("thread_id") if name == "thread_id" else c[name] for name in names
    ]
    source = select(*selected).where(
        c.tenant_id == TENANT, c.workspace_id == WORKSPACE, c.thread_id == bindparam("source")
    )
    return insert(table).from_select(names, source)


@functools.cache
def orphans(dialect: str) -> tuple[Any, Any]:
    """Delete, in one (thread, namespace), the channel versions no checkpoint's
    ``versions`` names, then the blobs neither a channel version nor a write refers to."""
    ch, b = CHANNELS.c, BLOBS.c
    entries, same_version = _versions_naming(dialect)
    referred = exists(
        select(literal(1))
        .select_from(CHECKPOINTS)
        .join(entries, literal(True))
        .where(in_thread(CHECKPOINTS), entries.c.key == ch.channel, same_version)
    )
    channels = delete_from(CHANNELS).where(in_thread(CHANNELS), ~referred)
    used = [
        exists(
            select(literal(1)).where(
                and_(
                    table.c.tenant_id == b.tenant_id,
                    table.c.workspace_id == b.workspace_id,
                    table.c.thread_id == b.thread_id,
                    table.c.checkpoint_ns == b.checkpoint_ns,
                    table.c.digest == b.digest,
                )
            )
        )
        for table in (CHANNELS, WRITES)
    ]
    blobs = delete_from(BLOBS).where(in_thread(BLOBS), ~used[0], ~used[1])
    return channels, blobs


#: A version the put stored as Python's ``str`` of a number: JSON may spell the same
#: number otherwise (1e20 against '1e+20', 1e-05 against 0.00001).
_NUMBER = "^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$"


def _versions_naming(dialect: str) -> tuple[Any, Any]:
    """The (channel, version) entries of each checkpoint's ``versions``, and whether an
    entry names the channel row's ``version``: the same text, or, both spelling numbers,
    the same value (text that spells a number equal to another keeps a row it need not:
    never is a value a kept checkpoint names deleted)."""
    cp, ch = CHECKPOINTS.c, CHANNELS.c
    if dialect == "postgresql":
        each = func.jsonb_each_text(func.cast(cp.versions, JSONB()))
        entries = each.table_valued("key", "value").alias("entry")
        number = and_(
            entries.c.value.op("~")(_NUMBER),
            ch.version.op("~")(_NUMBER),
            func.cast(ch.version, Float()) == func.cast(entries.c.value, Float()),
        )
        return entries, or_(entries.c.value == ch.version, number)
    entries = func.json_each(cp.versions).table_valued("key", "value", "type").alias("entry")
    text = func.cast(entries.c.value, Text()) == ch.version
    real = and_(entries.c.type == "real", func.cast(ch.version, Float()) == entries.c.value)
    return entries, or_(text, real)


def idle_threads(limit: int) -> Any:
    """Threads of the workspace whose every namespace was last written before ``:before``."""
    t = THREADS.c
    return (
        select(t.thread_id)
        .where(t.tenant_id == TENANT, t.workspace_id == WORKSPACE)
        .group_by(t.thread_id)
        .having(func.max(t.updated_at) < bindparam("before"))
        .order_by(t.thread_id)
        .limit(limit)
    )


def crowded(limit: int) -> Any:
    """(thread, namespace) pairs after ``(:after_thread, :after_ns)`` holding more than
    ``:keep_last`` checkpoints, in key order."""
    c = CHECKPOINTS.c
    after = tuple_(c.thread_id, c.checkpoint_ns) > tuple_(
        bindparam("after_thread"), bindparam("after_ns")
    )
    return (
        select(c.thread_id, c.checkpoint_ns)
        .where(c.tenant_id == TENANT, c.workspace_id == WORKSPACE, after)
        .group_by(c.thread_id, c.checkpoint_ns)
        .having(func.count() > bindparam("keep_last"))
        .order_by(c.thread_id, c.checkpoint_ns)
        .limit(limit)
    )


def reset_head() -> Any:
    """Set one (thread, namespace)'s head to its newest checkpoint (NULL when none); bound
    as :func:`in_thread_renamed` says."""
    newest = select(func.max(CHECKPOINTS.c.checkpoint_id)).where(in_thread_renamed(CHECKPOINTS))
    return update(THREADS).where(in_thread_renamed(THREADS)).values(head=newest.scalar_subquery())
