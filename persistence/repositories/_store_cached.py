"""What the read cache keeps of stores: each item by store and key hash, its value as
stored and ``(key, codec, checksum)`` beside it (``persistence._cache_front``;
docs/cache.md). Its version is the item's ``version`` column (migration 0007)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from persistence.cache import Kind

__all__ = ["ITEM", "item_key", "store_key"]


def _unpack(meta: bytes) -> tuple[Any, ...]:
    return tuple(orjson.loads(meta))


#: A store item.
ITEM = Kind("store-item", pack=orjson.dumps, unpack=_unpack)


def store_key(workspace_id: uuid.UUID, store: str) -> str:
    """Marks a store read under its lock (never a cache entry of its own)."""
    return f"store:{workspace_id}:{store}"


def item_key(workspace_id: uuid.UUID, store: str, digest: bytes) -> str:
    """The cache key of an item (the front prefixes the tenant)."""
    return f"store:{workspace_id}:{store}:{digest.hex()}"
