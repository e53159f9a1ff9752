"""What the read cache keeps of each aggregate (``persistence._cache_front``;
docs/cache.md): the kinds of entries, how their ``meta`` travels through Redis, and
their keys (the front prefixes the tenant). Shared by both APIs.

* a state's latest version: its stored payload, its ``StateVersion`` beside it; a
  version by number the same way, never one with an expiry, below the state's floor;
* a workflow's latest revision, or one by number: its ``WorkflowRecord`` (no payload);
* a store item: its stored value, ``(key, codec, checksum)`` beside it;
* an artifact up to ``cache_max_artifact_bytes``: its stored payload, ``(kind, codec,
  checksum)`` beside it.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from persistence.cache import Kind
from persistence.records.states import StateVersion
from persistence.records.workflows import WorkflowRecord

__all__ = [
    "ARTIFACT",
    "ITEM",
    "STATE",
    "WORKFLOW",
    "artifact_key",
    "item_key",
    "state_floor_key",
    "state_key",
    "state_version_key",
    "store_key",
    "workflow_key",
]


def _record_json(record: Any) -> bytes:
    return bytes(record.model_dump_json().encode())


def _triple(meta: bytes) -> tuple[Any, ...]:
    return tuple(orjson.loads(meta))


STATE = Kind("state", pack=_record_json, unpack=StateVersion.model_validate_json)
WORKFLOW = Kind("workflow", pack=_record_json, unpack=WorkflowRecord.model_validate_json)
ITEM = Kind("store-item", pack=orjson.dumps, unpack=_triple)
ARTIFACT = Kind("artifact", pack=orjson.dumps, unpack=_triple)


# Workspace ids as text, by id: str() of a UUID costs more than a look-up, and every
# cached read builds a key of one. Bounded: a process serving more starts over.
_TEXTS: dict[uuid.UUID, str] = {}
_TEXTS_MAX = 4096


def _text(workspace_id: uuid.UUID) -> str:
    found = _TEXTS.get(workspace_id)
    if found is None:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        found = _TEXTS[workspace_id] = str(workspace_id)
    return found


def state_key(workspace_id: uuid.UUID, state_id: str) -> str:
    """A state's latest version."""
    return f"state:{_text(workspace_id)}:{state_id}"


def state_version_key(workspace_id: uuid.UUID, state_id: str, version: int) -> str:
    """One version of a state (what it holds never changes while it exists)."""
    return f"statev:{_text(workspace_id)}:{version}:{state_id}"


def state_floor_key(workspace_id: uuid.UUID, state_id: str) -> str:
    """A state's version floor: its tombstone says no version below it may be served
    (raised when versions go: pruned, deleted, or bound to expire, see
    ``persistence.repositories.states.writer``)."""
    return f"statef:{workspace_id}:{state_id}"


def workflow_key(workspace_id: uuid.UUID, name: str, revision: int | None = None) -> str:
    """A workflow's latest revision, or ``revision``."""
    latest = f"workflow:{workspace_id}:{name}"
    return latest if revision is None else f"{latest}@{revision}"


def store_key(workspace_id: uuid.UUID, store: str) -> str:
    """Marks a store read under its lock (never a cache entry of its own)."""
    return f"store:{workspace_id}:{store}"


def item_key(workspace_id: uuid.UUID, store: str, digest: bytes) -> str:
    """A store item, by its key's hash."""
    return f"store:{workspace_id}:{store}:{digest.hex()}"


def artifact_key(workspace_id: uuid.UUID, name: str) -> str:
    return f"artifact:{workspace_id}:{name}"
