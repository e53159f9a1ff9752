"""codecs: exact JSON, compression codecs and checksums (no I/O)."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from persistence.codecs import (
    CODECS,
    MAX_JSON_DEPTH,
    checksum,
    compress,
    decode,
    decode_json,
    decompress,
    dump_json,
    encode,
    validate_codec,
    validate_json,
    validate_metadata,
)
from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.settings import Settings


class _Color(enum.Enum):
    RED = 1


class _Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class _Point:
    x: int
    y: int


class _Text(str):
    pass


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types everywhere and the same dict key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_dump_then_decode_is_exact(value: Any) -> None:
    assert same(decode_json(dump_json(value)), value)


def test_key_order_unicode_and_64_bit_ints_survive() -> None:
    value = {"z": 1, "a": [2**63 - 1, -(2**63)], "ü": "é✓🎉\u0000", "m": {"b": 0.1, "a": 1e-300}}
    back = decode_json(dump_json(value))
    assert same(back, value) and list(back) == ["z", "a", "ü", "m"]


@pytest.mark.parametrize(
    ("value", "error", "path"),
    [
        ({"a": [1, {"b": float("nan")}]}, InvalidInputError, "$.a[1].b"),
        ([float("inf")], InvalidInputError, "$[0]"),
        ({"a": float("-inf")}, InvalidInputError, "$.a"),
        ({"big": 2**63}, InvalidInputError, "$.big"),
        ({1: "x"}, InvalidTypeError, "key 1"),
        ({"s": {1, 2}}, InvalidTypeError, "set at $.s"),
        ([b"raw"], InvalidTypeError, "bytes at $[0]"),
        ({"t": (1, 2)}, InvalidTypeError, "tuple at $.t"),
        ({"o": object()}, InvalidTypeError, "object at $.o"),
        # what orjson encodes but would not load back as given (dump_json's fast path)
        ({"u": uuid.UUID(int=1)}, InvalidTypeError, "UUID at $.u"),
        ({"e": _Color.RED}, InvalidTypeError, "_Color at $.e"),
        ({"e": _Level.HIGH}, InvalidTypeError, "_Level at $.e"),
        ({"d": datetime.date(2026, 1, 1)}, InvalidTypeError, "date at $.d"),
        ({"p": _Point(1, 2)}, InvalidTypeError, "_Point at $.p"),
        ({"s": _Text("x")}, InvalidTypeError, "_Text at $.s"),
        ({"o": collections.OrderedDict(a=1)}, InvalidTypeError, "OrderedDict at $.o"),
        ({"f": orjson.Fragment(b"[1]")}, InvalidTypeError, "Fragment at $.f"),
        ({"u": 2**64 - 1}, InvalidInputError, "$.u"),
        ({"n": [float("nan")] * 2}, InvalidInputError, r"$.n[0]"),
    ],
)
def test_refused_values_name_the_path(value: Any, error: type[Exception], path: str) -> None:
    with pytest.raises(error, match=path.replace("$", r"\$").replace("[", r"\[")):
        dump_json(value)
    with pytest.raises(InvalidInputError):  # every refusal is an InvalidInputError
        validate_json(value)


def test_bool_subclass_and_deep_nesting() -> None:
    class Flag(int):
        pass

    with pytest.raises(InvalidTypeError):
        dump_json({"x": Flag(1)})
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(InvalidInputError):
        dump_json(deep)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("data", [b"", b"x", b"abc" * 10_000, bytes(range(256)) * 50])
def test_each_codec_round_trips(codec: str, data: bytes) -> None:
    packed = compress(data, codec)
    assert decompress(packed, codec) == data
    if codec != "none" and len(data) > 1000 and data[:3] == b"abc":
        assert len(packed) < len(data) // 10


@pytest.mark.parametrize("codec", ["zlib", "lz4", "zstd"])
def test_garbage_does_not_decompress(codec: str) -> None:
    with pytest.raises(DataCorruptionError, match=codec):
        decompress(b"definitely not compressed", codec)


def test_unknown_codecs() -> None:
    for name in ("brotli", "", "ZLIB"):
        with pytest.raises(InvalidInputError, match="unknown compression codec"):
            validate_codec(name)
        with pytest.raises(InvalidInputError):
            compress(b"x", name)
    with pytest.raises(DataCorruptionError, match="unknown codec"):
        decompress(b"x", "brotli")


def test_encode_respects_threshold_and_checksums_raw_bytes() -> None:
    raw = b'{"k":"' + b"v" * 4000 + b'"}'
    small = encode(b"[1]", codec="zstd", threshold=1024)
    assert (small.codec, small.payload, small.raw_size) == ("none", b"[1]", 3)
    big = encode(raw, codec="zstd", threshold=1024)
    assert big.codec == "zstd" and big.stored_size == len(big.payload) < len(raw)
    assert big.checksum == checksum(raw) and len(big.checksum) == 64
    assert decode(big.payload, codec="zstd", expected_checksum=big.checksum, what="x") == raw
    assert encode(raw, codec="lz4", threshold=0).codec == "lz4"


def test_decode_detects_tampering_and_names_what() -> None:
    enc = encode(b'{"a":1}', codec="zlib", threshold=0)
    with pytest.raises(DataCorruptionError, match="state 's' version 3: checksum"):
        decode(enc.payload, codec="zlib", expected_checksum="0" * 64, what="state 's' version 3")
    with pytest.raises(DataCorruptionError, match="state 's' version 3"):
        decode(b"junk", codec="zlib", expected_checksum=enc.checksum, what="state 's' version 3")
    plain = encode(b'{"a":1}', codec="none", threshold=0)
    with pytest.raises(DataCorruptionError):
        decode(b'{"a":2}', codec="none", expected_checksum=plain.checksum, what="w")


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_depth_is_checked_without_recursion_and_names_the_path() -> None:
    assert decode_json(dump_json(_nested(MAX_JSON_DEPTH))) == _nested(MAX_JSON_DEPTH)
    for depth in (MAX_JSON_DEPTH + 1, 10_000, 100_000):
        with pytest.raises(InvalidInputError, match=r"nested deeper .* at \$\[0\]\[0\]"):
            dump_json(_nested(depth))
        with pytest.raises(InvalidInputError, match="max_json_depth"):
            validate_json(_nested(depth))
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(InvalidInputError, match="nested deeper"):
        dump_json({"a": cycle})


def test_a_lower_max_depth_counts_every_container() -> None:
    for value in ([[1]], {"a": {}}, {"b": []}, {"a": [2]}):
        dump_json(value, max_depth=2)
    for value, path in (([[[]]], r"\$\[0\]\[0\]"), ({"a": [{}]}, r"\$\.a\[0\]")):
        with pytest.raises(InvalidInputError, match=path):
            dump_json(value, max_depth=2)
        with pytest.raises(InvalidInputError, match=path):
            validate_json(value, max_depth=2)
    with pytest.raises(InvalidInputError):  # a higher limit is capped at MAX_JSON_DEPTH
        dump_json(_nested(300), max_depth=10**6)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("\ud800", r"\$"),
        ({"a": ["ok", "x\udfff"]}, r"\$\.a\[1\]"),
        ({"k": {"\ud83d": 1}}, r"a key at \$\.k"),
        ({"odd key": {"b": "\udc00"}}, r"\$\['odd key'\]\.b"),
    ],
)
def test_lone_surrogates_are_refused_in_strings_and_keys(value: Any, path: str) -> None:
    for check in (dump_json, validate_json, validate_metadata):
        if check is validate_metadata and not isinstance(value, dict):
            continue
        with pytest.raises(InvalidInputError, match=f"lone surrogate.*{path}") as info:
            check(value)
        str(info.value).encode("utf-8")  # the message itself is printable


def test_nul_and_surrogate_pairs_are_fine() -> None:
    value = {"\x00": "a\x00b", "emoji": "\U0001f600"}
    validate_json(value)
    assert decode_json(dump_json(value)) == value


def test_metadata_is_none_or_a_dict_of_exact_json() -> None:
    assert validate_metadata(None) == {}
    assert validate_metadata({"a": [1]}) == {"a": [1]}
    for bad in ([1], "x", 1):
        with pytest.raises(InvalidTypeError, match="metadata must be a dict"):
            validate_metadata(bad)
    with pytest.raises(InvalidInputError, match=r"\$\.a"):
        validate_metadata({"a": float("nan")})


def test_json_that_does_not_parse_is_corruption() -> None:
    for raw in (b'{"a":', b"\xff", b"[" * 2000 + b"]" * 2000):
        with pytest.raises(DataCorruptionError, match="store item 'k': stored JSON"):
            decode_json(raw, what="store item 'k'")


def test_the_setting_and_the_codec_share_the_ceiling() -> None:
    assert Settings().max_json_depth == MAX_JSON_DEPTH == 254
    assert Settings(max_json_depth=1).max_json_depth == 1
    for bad in (0, MAX_JSON_DEPTH + 1):
        with pytest.raises(ValidationError):
            Settings(max_json_depth=bad)
    with pytest.raises(InvalidTypeError):
        validate_codec(5)  # type: ignore[arg-type]
