"""Records of versioned agent state: version metadata, loaded states, checkpoints, stats."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from persistence.records._base import Record

__all__ = ["Checkpoint", "LoadedState", "StateStats", "StateVersion"]


class StateVersion(Record):
    """Metadata of one version of a state (the value itself is not included)."""

    state_id: str
    version: int
    parent_version: int | None
    created_at: datetime
    expires_at: datetime | None
    raw_size: int
    """Bytes of the serialized JSON, before compression."""
    stored_size: int
    """Bytes stored, after compression."""
    codec: str
    checksum: str
    """SHA-256 (hex) of the serialized JSON, verified on every load."""
    tags: tuple[str, ...]
    metadata: dict[str, Any]


class LoadedState(NamedTuple):
    """What ``load`` returns: ``state, meta = uow.states.load("id")``."""

    state: Any
    meta: StateVersion


class Checkpoint(Record):
    """A named snapshot of one version of a state, restorable as a new version."""

    id: uuid.UUID
    state_id: str
    name: str
    version: int
    created_at: datetime
    raw_size: int
    stored_size: int
    codec: str
    checksum: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]


class StateStats(Record):
    """Counts and sizes of the states of one workspace."""

    states: int
    """States that exist and have not expired."""
    expired_states: int
    """States past their expiry, waiting for ``purge_expired``."""
    versions: int
    checkpoints: int
    raw_bytes: int
    """Bytes of every stored version before compression."""
    stored_bytes: int
    """Bytes of every stored version as stored."""
    compression_ratio: float | None
    """``raw_bytes / stored_bytes`` (``None`` when nothing is stored)."""
    versions_per_state: float
    max_versions_per_state: int
