"""JSON serialization that round-trips exactly, compression codecs and checksums."""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass
from typing import Any, cast, get_args

import lz4.frame
import orjson
import zstandard

from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.settings import Codec

__all__ = [
    "CODECS",
    "Encoded",
    "checksum",
    "compress",
    "decode_json",
    "decompress",
    "dump_json",
    "encode",
    "validate_codec",
    "validate_json",
]

CODECS: tuple[str, ...] = get_args(Codec)
JSONValue = Any  # dict[str, JSON] | list[JSON] | str | int | float | bool | None

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def validate_json(value: object, *, what: str = "value") -> None:
    """Refuse anything that would not load back exactly as it was given.

    Accepted: dict with str keys, list, str, int (64-bit), finite float, bool, None.
    Raises :class:`InvalidTypeError` for other types, :class:`InvalidInputError` for
    NaN, infinity or integers outside 64 bits. Nothing is written before this passes.
    """
    if not _is_exact_json(value):
        _raise_first_problem(value, "$", what)


def _is_exact_json(value: object) -> bool:
    # The hot path: no per-node allocation beyond the stack; the message is built on failure.
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not _INT64_MIN <= item <= _INT64_MAX:  # type: ignore[operator]
                return False
        elif kind is float:
            if not math.isfinite(item):  # type: ignore[arg-type]
                return False
        elif kind is dict:
            for key, child in item.items():  # type: ignore[attr-defined]
                if type(key) is not str:
                    return False
                push(child)
        elif kind is list:
            extend(item)  # type: ignore[arg-type]
        else:
            return False
    return True


def _raise_first_problem(item: object, path: str, what: str) -> None:
    kind = type(item)
    if kind is int and not _INT64_MIN <= cast(int, item) <= _INT64_MAX:
        raise InvalidInputError(f"{what}: integer at {path} does not fit in 64 bits")
    if kind is float and not math.isfinite(cast(float, item)):
        raise InvalidInputError(f"{what}: NaN or infinity at {path} is not JSON")
    if kind is dict:
        for key, child in cast(dict[object, object], item).items():
            if type(key) is not str:
                raise InvalidTypeError(
                    f"{what}: key {key!r} at {path} is {type(key).__name__}, not str"
                )
            _raise_first_problem(child, f"{path}.{key}", what)
    elif kind is list:
        for index, child in enumerate(cast(list[object], item)):
            _raise_first_problem(child, f"{path}[{index}]", what)
    elif kind not in (str, bool, int, float, type(None)):
        raise InvalidTypeError(
            f"{what}: {kind.__name__} at {path} is not a JSON value "
            "(use dict, list, str, int, float, bool or None)"
        )


def dump_json(value: object, *, what: str = "value") -> bytes:
    """Validate and serialize ``value`` to compact UTF-8 JSON, keeping dict key order."""
    validate_json(value, what=what)
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # nesting deeper than 254 levels
        raise InvalidInputError(f"{what}: {exc}") from exc


def decode_json(data: bytes) -> JSONValue:
    """Parse JSON written by :func:`dump_json`."""
    return orjson.loads(data)


def validate_codec(codec: str) -> Codec:
    if codec not in CODECS:
        raise InvalidInputError(f"unknown compression codec {codec!r}; use one of {CODECS}")
    return cast(Codec, codec)


def compress(data: bytes, codec: str) -> bytes:
    codec = validate_codec(codec)
    if codec == "none":
        return data
    if codec == "zlib":
        return zlib.compress(data, 6)
    if codec == "lz4":
        return cast(bytes, lz4.frame.compress(data))
    return zstandard.ZstdCompressor(level=3).compress(data)


def decompress(data: bytes, codec: str) -> bytes:
    """Undo :func:`compress`; a payload that does not decode raises DataCorruptionError."""
    try:
        if codec == "none":
            return data
        if codec == "zlib":
            return zlib.decompress(data)
        if codec == "lz4":
            return cast(bytes, lz4.frame.decompress(data))
        if codec == "zstd":
            return zstandard.ZstdDecompressor().decompress(data)
    except Exception as exc:
        raise DataCorruptionError(f"payload does not decode with codec {codec!r}: {exc}") from exc
    raise DataCorruptionError(f"unknown codec {codec!r} recorded for a stored payload")


def checksum(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Encoded:
    """A payload ready to store: the bytes as written plus what is needed to read them."""

    payload: bytes
    codec: Codec
    checksum: str
    raw_size: int

    @property
    def stored_size(self) -> int:
        return len(self.payload)


def encode(raw: bytes, *, codec: str, threshold: int) -> Encoded:
    """Checksum ``raw`` and compress it with ``codec`` unless it is under ``threshold`` bytes."""
    chosen = validate_codec(codec)
    if len(raw) < threshold:
        chosen = "none"
    return Encoded(compress(raw, chosen), chosen, checksum(raw), len(raw))


def decode(payload: bytes, *, codec: str, expected_checksum: str, what: str) -> bytes:
    """Decompress ``payload`` and verify its checksum; raise DataCorruptionError naming ``what``."""
    try:
        raw = decompress(payload, codec)
    except DataCorruptionError as exc:
        raise DataCorruptionError(f"{what}: {exc}") from exc
    if checksum(raw) != expected_checksum:
        raise DataCorruptionError(f"{what}: checksum mismatch, the stored payload was altered")
    return raw
