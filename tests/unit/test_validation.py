"""Validation: slugs (1-63 characters of a-z, 0-9 and '-'), text, integers, durations and
the page cursor codec."""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime, timedelta

import pytest

from persistence._cursor import cursor_key, decode_cursor, encode_cursor
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.validation import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    count,
    expiry,
    validate_int,
    validate_seconds,
    validate_slug,
    validate_text,
)


@pytest.mark.parametrize("slug", ["a", "0", "acme", "acme-2", "a-b-c", "x" * 63, "9lives"])
def test_valid_slugs(slug: str) -> None:
    assert validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug",
    ["", "-", "-a", "a-", "Acme", "a_b", "a.b", "a b", " a", "a\n", "é", "x" * 64, "a/b"],
)
def test_invalid_slugs(slug: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid tenant slug") as info:
        validate_slug(slug, what="tenant slug")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("slug", [None, 42, b"acme", ["acme"]])
def test_non_strings(slug: object) -> None:
    with pytest.raises(InvalidTypeError, match="must be a str") as info:
        validate_slug(slug)
    assert isinstance(info.value, TypeError) and isinstance(info.value, InvalidInputError)


# -- text, integers, durations, cursors (issue 11: one rule on both backends) ---------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\x00b", "NUL at index 1"),
        ("\ud800", "a lone surrogate at index 0"),
        ("ok\udfff", "a lone surrogate at index 2"),
        ("\ud83d\ude00", "a lone surrogate at index 0"),  # a pair as two code points
        ("", "use 1-10 characters"),
        ("x" * 11, "use 1-10 characters"),
    ],
)
def test_text_refusals_say_where(value: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem) as info:
        validate_text(value, "tag", max_length=10)
    str(info.value).encode("utf-8")  # printable, whatever the input held


def test_text_accepts_any_other_character_and_refuses_other_types() -> None:
    for value in ("\U0001f600", "é", "a b", "\x01\x7f", "\n"):
        assert validate_text(value, "id", max_length=10) == value
    assert validate_text("", "prefix", max_length=10, min_length=0) == ""
    for value in (None, 5, b"x", ["x"]):
        with pytest.raises(InvalidTypeError, match="id must be a str"):
            validate_text(value, "id", max_length=10)


@pytest.mark.parametrize(
    "value",
    [2**31, 2**63, -(2**63) - 1, 2**64, 10**30, 10**5000],
    ids=["2**31", "2**63", "-2**63-1", "2**64", "10**30", "10**5000"],
)
def test_integers_outside_the_column_are_refused(value: int) -> None:
    with pytest.raises(InvalidInputError, match="at most") as info:
        count(value, "version", minimum=1)
    assert len(str(info.value)) < 200  # no 5000-digit message
    if not INT64_MIN <= value <= INT64_MAX:
        with pytest.raises(InvalidInputError):
            validate_int(value, "fence", minimum=1)


def test_integers_inside_are_kept_and_other_types_refused() -> None:
    assert count(INT32_MAX, "version", minimum=1) == INT32_MAX
    assert count(5, "limit", minimum=1, maximum=10**12) == 5  # never past 32 bits
    with pytest.raises(InvalidInputError):
        count(2**31, "limit", minimum=1, maximum=10**12)
    assert validate_int(INT64_MAX, "fence") == INT64_MAX
    for value in (True, 1.0, "1", None, float("nan")):
        with pytest.raises(InvalidTypeError, match="must be an int"):
            count(value, "version", minimum=1)


def test_durations() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert expiry(1.5, now) == now + timedelta(seconds=1.5)
    assert expiry(timedelta(days=1), now) == now + timedelta(days=1)
    assert expiry(None, now) is None
    for bad in (0, -1, math.inf, math.nan, 10**30, 2**1024, timedelta.max, timedelta(0)):
        with pytest.raises(InvalidInputError, match="ttl"):
            expiry(bad, now)
    for bad in ("5", True, [1]):
        with pytest.raises(InvalidTypeError):
            expiry(bad, now)
    assert validate_seconds(0, "wait", maximum=10, allow_zero=True) == 0.0
    for bad in (0, 11, 2**1024, math.nan, -math.inf):
        with pytest.raises(InvalidInputError, match="ttl must be > 0 and at most 10"):
            validate_seconds(bad, "ttl", maximum=10)


def test_one_cursor_codec() -> None:
    assert decode_cursor(encode_cursor("state-1"), [str]) == ["state-1"]
    assert decode_cursor(encode_cursor(7), [int]) == [7]
    assert cursor_key(encode_cursor("né")) == "né"
    assert decode_cursor(None, [str]) is None
    for bad in (5, 1.5, b"x", ["x"]):
        with pytest.raises(InvalidTypeError, match="cursor must be a str"):
            decode_cursor(bad, [str])
    raw = base64.urlsafe_b64encode
    crafted: list[tuple[str, list[type]]] = [
        ("", [str]),
        ("!!!", [str]),
        ("\ud800", [str]),
        (encode_cursor(1), [str]),  # the wrong type for this page
        (encode_cursor("a", "b"), [str]),
        (raw(b'["\\u0000"]').decode(), [str]),
        (raw(b"[2147483648]").decode(), [int]),  # past the INTEGER column of versions
        (raw(b"ok").decode(), [str]),  # the old name-only format
    ]
    for cursor, kinds in crafted:
        with pytest.raises(InvalidInputError, match="invalid cursor"):
            decode_cursor(cursor, kinds)
