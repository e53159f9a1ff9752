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

__all__ = ["Chain", "keep_set"]


@dataclass(frozen=True, slots=True)
class Chain:
    rows: Sequence[Any]  # checkpoint rows (persistence.langgraph._maintenance.chain_rows)
    valued: set[tuple[str, str]]  # (channel, version) pairs stored with a value


def _delta_channels(row: Any) -> set[str]:
    counters = orjson.loads(row.metadata).get("counters_since_delta_snapshot")
    return set(counters) if isinstance(counters, dict) else set()


def keep_set(chain: Chain, keep_last: int = 1) -> set[str]:
    """The ids of the checkpoints to keep: the latest ``keep_last`` and, for each, the
    ancestors its delta channels are rebuilt from (empty when there are none)."""
    if not chain.rows:
        return set()
    by_id = {row.checkpoint_id: row for row in chain.rows}
    keep = set(sorted(by_id, reverse=True)[:keep_last])
    for kept in list(keep):
        _keep_ancestors(chain, by_id, by_id[kept], keep)
    return keep


def _keep_ancestors(chain: Chain, by_id: dict[str, Any], row: Any, keep: set[str]) -> None:
    remaining = {c for c in _delta_channels(row) if not _holds(chain, row, c)}
    parent = row.parent_id
    while remaining and parent in by_id:
        row = by_id[parent]
        keep.add(row.checkpoint_id)
        remaining = {c for c in remaining if not _holds(chain, row, c)}
        parent = row.parent_id


def _holds(chain: Chain, row: Any, channel: str) -> bool:
    """Whether ``row`` stores a value of ``channel`` as a blob. (A value kept inline is
    a small primitive, never a delta snapshot: not counting it only keeps more.)"""
    version = orjson.loads(row.versions).get(channel)
    return version is not None and (channel, str(version)) in chain.valued
