"""What the read cache keeps of states: the latest version of each, by state id
(``persistence._cache_front``; docs/cache.md)."""

from __future__ import annotations

import uuid

from persistence.cache import Kind
from persistence.records.states import StateVersion

__all__ = ["LATEST", "latest_key"]


def _pack(meta: StateVersion) -> bytes:
    return meta.model_dump_json().encode()


#: The latest version of a state: its stored payload, its metadata beside it.
LATEST = Kind("state", pack=_pack, unpack=StateVersion.model_validate_json)


def latest_key(workspace_id: uuid.UUID, state_id: str) -> str:
    """The cache key of a state's latest version (the front prefixes the tenant)."""
    return f"state:{workspace_id}:{state_id}"
