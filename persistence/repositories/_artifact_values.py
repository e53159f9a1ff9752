"""What an artifact holds: its kinds (bytes, str, JSON), content types and metadata,
validated before anything is written, and the stored bytes turned back into the kind."""

from __future__ import annotations

import re
from typing import Any

from persistence.codecs import MAX_JSON_DEPTH, decode_json, dump_json, validate_metadata
from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.records import ArtifactKind

__all__ = [
    "DEFAULT_CONTENT_TYPES",
    "decode_artifact",
    "to_raw",
    "validate_artifact_metadata",
    "validate_content_type",
]

#: The content type recorded when the caller gives none.
DEFAULT_CONTENT_TYPES: dict[str, str] = {
    "bytes": "application/octet-stream",
    "str": "text/plain; charset=utf-8",
    "json": "application/json",
}
_CONTENT_TYPE = re.compile(r"[!-~][ -~]{0,254}")  # printable ASCII, at most 255


def to_raw(data: object, max_depth: int = MAX_JSON_DEPTH) -> tuple[ArtifactKind, bytes]:
    """The bytes that are stored for ``data`` and its kind (no copy for ``bytes``).

    ``bytearray`` and ``memoryview`` are binary data too: they load back as ``bytes``."""
    if isinstance(data, bytes):
        return "bytes", data
    if isinstance(data, bytearray | memoryview):
        return "bytes", bytes(data)
    if isinstance(data, str):
        try:
            return "str", data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"artifact text is not valid UTF-8: {exc.reason}") from None
    return "json", dump_json(data, what="artifact value", max_depth=max_depth)


def decode_artifact(kind: str, raw: bytes, *, what: str = "artifact") -> Any:
    """Turn stored raw bytes back into the kind they were saved as."""
    if kind == "bytes":
        return raw
    if kind == "json":
        return decode_json(raw, what=what)  # DataCorruptionError if it does not parse
    try:
        if kind == "str":
            return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataCorruptionError(f"{what}: does not decode as {kind}: {exc}") from exc
    raise DataCorruptionError(f"{what}: unknown kind {kind!r}")


def validate_content_type(value: object, kind: str) -> str:
    if value is None:
        return DEFAULT_CONTENT_TYPES[kind]
    if not isinstance(value, str):
        raise InvalidTypeError(f"content_type must be a str, not {type(value).__name__}")
    if not _CONTENT_TYPE.fullmatch(value):
        raise InvalidInputError(
            f"invalid content_type {value!r}: use 1-255 printable ASCII characters"
        )
    return value


def validate_artifact_metadata(value: object, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """None or a dict of exact JSON, at most 64 KiB serialized."""
    meta = validate_metadata(value, what="artifact metadata", max_depth=max_depth)
    if meta and len(dump_json(meta, max_depth=max_depth)) > 64 * 1024:
        raise InvalidInputError("artifact metadata must serialize to at most 64 KiB of JSON")
    return meta
