"""codecs: exact JSON, compression codecs and checksums (no I/O)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persistence.codecs import (
    CODECS,
    checksum,
    compress,
    decode,
    decode_json,
    decompress,
    dump_json,
    encode,
    validate_codec,
    validate_json,
)
from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError

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
