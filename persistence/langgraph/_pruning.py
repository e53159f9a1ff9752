"""What ``prune(strategy="keep_latest")`` keeps of one (thread, namespace): the latest
checkpoint and, for each ``DeltaChannel`` it has no stored value of, the ancestors its
value is rebuilt from (``get_delta_channel_history`` walks them: their writes, up to the
nearest ancestor holding a value). A channel is a delta channel when the checkpoint's
metadata counts it in ``counters_since_delta_snapshot``, which LangGraph writes for
exactly those channels. Nothing a surviving checkpoint's state depends on is deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from langgraph.checkpoint.serde.base import SerializerProtocol

from persistence.langgraph import _serial as serial

__all__ = ["Chain", "keep_set"]


@dataclass(frozen=True, slots=True)
class Chain:
    rows: Sequence[Any]  # checkpoint rows (persistence.langgraph._maintenance.chain_rows)
    valued: set[tuple[str, str]]  # (channel, version) pairs stored with a value


def _delta_channels(row: Any) -> set[str]:
    counters = orjson.loads(row.metadata).get("counters_since_delta_snapshot")
    return set(counters) if isinstance(counters, dict) else set()


def keep_set(serde: SerializerProtocol, chain: Chain) -> set[str]:
    """The ids of the checkpoints to keep (empty when there are none)."""
    if not chain.rows:
        return set()
    by_id = {row.checkpoint_id: row for row in chain.rows}
    latest = by_id[max(by_id)]
    keep = {latest.checkpoint_id}
    remaining = {c for c in _delta_channels(latest) if not _holds(serde, chain, latest, c)}
    parent = latest.parent_id
    while remaining and parent in by_id and parent not in keep:
        row = by_id[parent]
        keep.add(row.checkpoint_id)
        remaining = {c for c in remaining if not _holds(serde, chain, row, c)}
        parent = row.parent_id
    return keep


def _holds(serde: SerializerProtocol, chain: Chain, row: Any, channel: str) -> bool:
    """Whether ``row`` stores a value of ``channel`` (a blob, or inline)."""
    version = orjson.loads(row.versions).get(channel)
    if version is None:
        return False
    if (channel, str(version)) in chain.valued:
        return True
    checkpoint = serial.checkpoint_of(serde, row, f"checkpoint {row.checkpoint_id!r}")
    return channel in checkpoint["channel_values"]
