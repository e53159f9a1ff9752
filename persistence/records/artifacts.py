"""Records of artifacts (metadata only; the data comes from ``load``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from persistence.records._base import Record

__all__ = ["ArtifactKind", "ArtifactRecord"]

ArtifactKind = Literal["bytes", "str", "json"]


class ArtifactRecord(Record):
    """What is known about an artifact without reading its data.

    ``size`` is the byte size of the data as given (UTF-8 for ``str``, compact JSON for
    ``json``); ``checksum`` is the SHA-256 of those bytes; ``stored_size`` and ``codec``
    say how it is stored; ``metadata`` is the caller's JSON object.
    """

    name: str
    kind: ArtifactKind
    content_type: str
    size: int
    stored_size: int
    codec: str
    checksum: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
