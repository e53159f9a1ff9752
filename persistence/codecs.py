"""JSON serialization that round-trips exactly, compression codecs and checksums."""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast, get_args

import lz4.frame
import orjson
import zstandard

from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.settings import Codec

__all__ = [
    "CODECS",
    "MAX_JSON_DEPTH",
    "Encoded",
    "checksum",
    "compress",
    "decode_json",
    "decompress",
    "dump_json",
    "encode",
    "load_payload",
    "validate_codec",
    "validate_json",
    "validate_metadata",
]

CODECS: tuple[str, ...] = get_args(Codec)
JSONValue = Any  # dict[str, JSON] | list[JSON] | str | int | float | bool | None

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
#: The deepest nesting orjson writes (a list in a list ... 254 levels; 255 raises).
#: ``Settings.max_json_depth`` may lower the limit, never raise it past this.
MAX_JSON_DEPTH = 254
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CLOSE = object()  # marks, on the check's stack, where a container's children end


def validate_json(value: object, *, what: str = "value", max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse anything that would not load back exactly as it was given.

    Accepted: dict with str keys, list, str, int (64-bit), finite float, bool, None,
    nested at most ``max_depth`` levels (``[]`` and ``{}`` are one level; at most
    :data:`MAX_JSON_DEPTH`). Strings and keys may hold any character but a lone
    surrogate (no UTF-8 for it). Raises :class:`InvalidTypeError` for other types,
    :class:`InvalidInputError` for NaN, infinity, integers outside 64 bits, lone
    surrogates or deeper nesting, naming the path (``$.a[3].b``). Nothing is written
    before this passes.
    """
    depth = min(max_depth, MAX_JSON_DEPTH)
    if not _is_exact_json(value, depth, check_text=True):
        _raise_first_problem(value, "$", what, depth)


def _is_exact_json(value: object, max_depth: int, *, check_text: bool) -> bool:
    # The hot path: containers go on a stack, scalars are checked where they are met
    # (most nodes are scalars, and a push and a pop cost more than the check); no
    # per-node allocation; the message is built on failure.
    stack: list[Any] = [[value]]  # the document, as the one child of a list of depth 0
    pop, push = stack.pop, stack.append
    surrogate = _LONE_SURROGATE.search
    depth = -1
    while stack:
        item: Any = pop()
        if item is _CLOSE:
            depth -= 1
            continue
        kind = type(item)
        if kind is dict:
            children: Any = item.values()
            for key in item:
                if type(key) is not str or (check_text and not key.isascii() and surrogate(key)):
                    return False
        else:
            children = item
        depth += 1
        if depth > max_depth:
            return False
        push(_CLOSE)
        for child in children:
            kind = type(child)
            if kind is str:
                if check_text and not child.isascii() and surrogate(child):
                    return False
            elif kind is dict or kind is list:
                push(child)
            elif kind is int:
                if not _INT64_MIN <= child <= _INT64_MAX:
                    return False
            elif kind is float:
                if not math.isfinite(child):
                    return False
            elif not (kind is bool or child is None):
                return False
    return True


def _step(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() and key.isascii() else f"{path}[{key!r}]"


def _where(path: str) -> str:
    return path if len(path) <= 120 else f"{path[:60]}...{path[-57:]}"


def _raise_first_problem(item: object, path: str, what: str, depth: int) -> None:
    kind = type(item)
    if kind is int and not _INT64_MIN <= cast(int, item) <= _INT64_MAX:
        raise InvalidInputError(f"{what}: integer at {_where(path)} does not fit in 64 bits")
    if kind is float and not math.isfinite(cast(float, item)):
        raise InvalidInputError(f"{what}: NaN or infinity at {_where(path)} is not JSON")
    if kind is str and _LONE_SURROGATE.search(cast(str, item)):
        raise InvalidInputError(f"{what}: lone surrogate in the string at {_where(path)}")
    if kind in (dict, list) and depth < 1:
        raise InvalidInputError(
            f"{what}: nested deeper than the limit at {_where(path)} (settings.max_json_depth)"
        )
    if kind is dict:
        for key, child in cast(dict[object, object], item).items():
            if type(key) is not str:
                raise InvalidTypeError(
                    f"{what}: key {key!r:.60} at {_where(path)} is {type(key).__name__}, not str"
                )
            if _LONE_SURROGATE.search(key):
                raise InvalidInputError(f"{what}: lone surrogate in a key at {_where(path)}")
            _raise_first_problem(child, _step(path, key), what, depth - 1)
    elif kind is list:
        for index, child in enumerate(cast(list[object], item)):
            _raise_first_problem(child, f"{path}[{index}]", what, depth - 1)
    elif kind not in (str, bool, int, float, type(None)):
        raise InvalidTypeError(
            f"{what}: {kind.__name__} at {_where(path)} is not a JSON value "
            "(use dict, list, str, int, float, bool or None)"
        )


def dump_json(value: object, *, what: str = "value", max_depth: int = MAX_JSON_DEPTH) -> bytes:
    """Validate (as :func:`validate_json`) and serialize ``value`` to compact UTF-8
    JSON, keeping dict key order."""
    depth = min(max_depth, MAX_JSON_DEPTH)
    if _is_exact_json(value, depth, check_text=False):
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:  # a lone surrogate: the check below names where
            pass
    _raise_first_problem(value, "$", what, depth)
    raise InvalidInputError(f"{what}: not serializable as JSON")  # pragma: no cover


def validate_metadata(
    value: object, *, what: str = "metadata", max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """User metadata: ``None`` (an empty dict) or a dict that is exact JSON."""
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidTypeError(f"{what} must be a dict, not {type(value).__name__}")
    validate_json(value, what=what, max_depth=max_depth)
    return cast(dict[str, Any], value)


def decode_json(data: bytes | str, *, what: str = "stored JSON") -> JSONValue:
    """Parse JSON written by :func:`dump_json`; DataCorruptionError naming ``what`` when
    it does not parse (the checksum matched, yet the bytes are not JSON)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DataCorruptionError(f"{what}: stored JSON does not parse: {exc}") from exc


def validate_codec(codec: object) -> Codec:
    if not isinstance(codec, str):
        raise InvalidTypeError(f"compression codec must be a str, not {type(codec).__name__}")
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


def load_payload(
    payload: bytes, *, codec: str, expected_checksum: str, what: Callable[[], str]
) -> JSONValue:
    """The JSON value of a stored ``payload``: :func:`decode`, then :func:`decode_json`;
    ``what()`` names it in the DataCorruptionError (called only to build one)."""
    if codec == "none" and checksum(payload) == expected_checksum:  # (most loads)
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass  # (the message below names it)
    name = what()
    raw = decode(payload, codec=codec, expected_checksum=expected_checksum, what=name)
    return decode_json(raw, what=name)
