"""The arguments: a table per family (bad ones, and a few good ones beside them) and
a hypothesis strategy per family that mixes them with generated ones."""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import strategies as st

from tests.integration.bad_input.model import ANY, CURSOR, INT, LIMIT, SECONDS, TEXT, VALUE


def nest(depth: int, container: type = list, *leaf: Any) -> Any:
    """``depth`` levels of lists (or dicts), the innermost holding ``leaf`` if given."""
    value: Any = list(leaf) if container is list else {"k": leaf[0]} if leaf else {}
    for _ in range(depth - 1):
        value = [value] if container is list else {"k": value}
    return value


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


_cycle: list[Any] = []
_cycle.append(_cycle)

VALUES: list[Any] = [
    {"a": [1, 2.5, None, True, "é"], "": {}},
    nest(254),
    nest(254, dict),
    nest(255),
    nest(300, dict),
    nest(10_000),
    nest(10_000, dict),
    nest(10_000, list, math.nan),  # a problem at the bottom: the message names its path
    nest(300, dict, {1: 2}),
    _cycle,
    math.nan,
    math.inf,
    {"x": [-math.inf]},
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    10**5000,
    "\ud800",
    ["ok", "x\udfff"],
    {"\ud83d": 1},
    "nul\x00",
    {"\x00key": "\x00"},
    {1: "int key"},
    {None: 1},
    {(1, 2): 3},
    {True: 1},
    {1, 2},
    frozenset({1}),
    b"bytes",
    bytearray(b"ba"),
    memoryview(b"mv"),
    (1, 2),
    [(1,)],
    object(),
    "x" * (LIMIT + 1),
    -0.0,
    1e308,
    "",
    [],
    None,
]
TEXTS: list[Any] = [
    "ok-name",
    "Ok_name.1",
    "é✓",
    "\U0001f600",
    " ",
    "",
    "a b",
    "a" * 101,
    "a" * 256,
    "a" * 1025,
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ud83d\ude00",  # a surrogate pair written as two code points: two lone surrogates
    "line\nbreak",
    "\x7f",
    "../x",
    5,
    None,
    b"bytes",
    ["a"],
    1.5,
]
INTS: list[Any] = [
    1,
    0,
    -1,
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    10**30,
    10**5000,
    True,
    1.0,
    "1",
    None,
    math.nan,
]
CURSORS: list[Any] = [
    None,
    5,
    1.5,
    b"x",
    ["x"],
    "",
    "!!!",
    "\ud800",
    "a\x00",
    b64(b'["ok"]'),
    b64(b"[1]"),
    b64(b'["2026-01-01T00:00:00+00:00","r1"]'),
    b64(b'["2026-01-01T00:00:00","r1"]'),
    b64(b'["\\u0000"]'),
    b64(b'["\\ud800"]'),
    b64(b"[18446744073709551616]"),
    b64(b"[9223372036854775808]"),
    b64(b'["a","b","c"]'),
    b64(b"{}"),
    b64(b"\xff\xfe"),
    b64(b"ok"),  # the old name-only format of stores, workflows and artifacts
]
SECONDS_: list[Any] = [
    1,
    0.5,
    0,
    -1,
    math.inf,
    math.nan,
    10**30,
    2**1024,
    1e308,
    timedelta(seconds=5),
    timedelta(0),
    timedelta.max,
    timedelta.min,
    datetime.now(UTC),
    datetime(2020, 1, 1),
    datetime.max.replace(tzinfo=UTC),
    True,
    "5",
    None,
]
ANYS: list[Any] = [
    ValueError("plain"),
    ValueError("nul\x00 and \ud800"),
    KeyError(10**5000),
    {"k": 1},
    {1: 1},
    [("k", 1)],
    [("k",)],
    [1],
    ["succeeded"],
    ["bogus"],
    5,
    None,
    "succeeded",
    object(),
    ValueError,
    lambda: 1,
]
TABLES = {VALUE: VALUES, TEXT: TEXTS, INT: INTS, CURSOR: CURSORS, SECONDS: SECONDS_, ANY: ANYS}


# Letters, digits, spaces, symbols, control characters (NUL among them) and lone surrogates.
_CHARS = st.characters(categories=["Cs", "Cc", "Lu", "Ll", "Lo", "Nd", "Zs", "So", "Pd"])
_texts = st.text(_CHARS, max_size=8)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # now and then far past 64 bits
    st.floats(),  # NaN and infinities included
    _texts,
    st.sampled_from([b"x", (1,), frozenset(), object(), bytearray(b"x")]),
)
_values = st.one_of(
    st.recursive(
        _leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(_texts | st.integers(-3, 3) | st.none(), children, max_size=4),
            st.tuples(children),
        ),
        max_leaves=12,
    ),
    st.integers(250, 2000).map(nest),
    st.sampled_from(VALUES),
)
_json_key = st.lists(st.text(max_size=6) | st.integers(-(2**63), 2**64 - 1), max_size=3)
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    VALUE: _values,
    TEXT: st.one_of(
        _texts,
        st.text(_CHARS, min_size=95, max_size=260),
        st.sampled_from(TEXTS),
        st.integers(),
        st.none(),
        st.binary(max_size=2),
    ),
    INT: st.one_of(
        st.integers(-3, 3),
        st.integers(),
        st.integers(-(2**70), 2**70),
        st.sampled_from(INTS),
        st.floats(),
        st.booleans(),
    ),
    CURSOR: st.one_of(
        st.sampled_from(CURSORS),
        _texts,
        st.binary(max_size=24).map(b64),
        _json_key.map(lambda key: b64(orjson.dumps(key))),
    ),
    SECONDS: st.one_of(
        st.sampled_from(SECONDS_),
        st.floats(),
        st.integers(),
        st.timedeltas(),
        st.datetimes(timezones=st.none() | st.just(UTC)),
    ),
    ANY: st.sampled_from(ANYS) | _values,
}
