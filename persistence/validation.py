"""Validation of what callers pass in, shared by every repository: text and names,
integers (to the range of the column they meet), durations.

One rule for both backends, checked before any statement runs: text holds no NUL
(PostgreSQL ``text`` cannot store it) and no lone surrogate (not encodable as UTF-8,
so neither backend can); an integer fits the column it is compared with or written to
(``INTEGER``: 32 bits, ``BIGINT``: 64 bits). Wrong types raise
:class:`~persistence.errors.InvalidTypeError`, bad values
:class:`~persistence.errors.InvalidInputError`; messages show values with ``repr``.
"""

from __future__ import annotations

import keyword
import math
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta

from persistence.errors import InvalidInputError, InvalidTypeError

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "count",
    "display_name",
    "expiry",
    "shown",
    "text_list",
    "unstorable",
    "validate_artifact_name",
    "validate_int",
    "validate_lease_name",
    "validate_seconds",
    "validate_slug",
    "validate_text",
    "validate_workflow_name",
]

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# What no text column of either backend can hold: NUL and lone (unpaired) surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def shown(value: str) -> str:
    """``repr`` of the first 40 characters: safe to print whatever ``value`` holds."""
    return repr(value[:40]) + ("..." if len(value) > 40 else "")


def unstorable(value: str) -> str | None:
    """What in ``value`` no database text can hold ("NUL at index 3"), or ``None``."""
    if value.isascii() and "\x00" not in value:  # (most text: no surrogate possible)
        return None
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    what = "NUL" if found.group() == "\x00" else "a lone surrogate"
    return f"{what} at index {found.start()}"


def validate_text(value: object, what: str, *, max_length: int, min_length: int = 1) -> str:
    """Return ``value`` if it is a str of ``min_length``-``max_length`` characters
    without NUL or lone surrogates (any id, name, key, prefix, tag or text field)."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(value).__name__}")
    if not min_length <= len(value) <= max_length:
        raise InvalidInputError(
            f"invalid {what} {shown(value)}: use {min_length}-{max_length} characters, "
            f"not {len(value)}"
        )
    problem = unstorable(value)
    if problem is not None:
        raise InvalidInputError(f"invalid {what} {shown(value)}: {problem}")
    return value


def display_name(name: object, *, default: str) -> str:
    """A human-readable name (tenants, workspaces): 1-200 characters, not blank;
    ``default`` when ``None``."""
    if name is None:
        return default
    checked = validate_text(name, "name", max_length=200)
    if not checked.strip():
        raise InvalidInputError("name must be 1-200 characters, not blank")
    return checked


_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def matching(value: object, pattern: re.Pattern[str], what: str, rule: str) -> str:
    """Return ``value`` if it is a str that ``pattern`` matches whole; else
    InvalidTypeError (not a str) or InvalidInputError saying ``rule``."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(value).__name__}")
    if not pattern.fullmatch(value):
        raise InvalidInputError(f"invalid {what} {shown(value)}: {rule}")
    return value


def validate_slug(slug: object, *, what: str = "slug") -> str:
    """Return ``slug`` if it is 1-63 chars of ``a-z0-9-`` not starting or ending with ``-``."""
    rule = "use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
    return matching(slug, _SLUG, what, rule)


def validate_workflow_name(name: object) -> str:
    """Return ``name`` if it is a Python identifier (not a keyword, NFKC-normal) of at
    most 100 characters; else raise InvalidInputError (InvalidTypeError if not a str)."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"workflow name must be a str, not {type(name).__name__}")
    if (
        not name.isidentifier()
        or keyword.iskeyword(name)
        or len(name) > 100
        or unicodedata.normalize("NFKC", name) != name
    ):
        raise InvalidInputError(
            f"invalid workflow name {shown(name)}: use a Python identifier (not a keyword) "
            "of at most 100 characters"
        )
    return name


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def validate_artifact_name(name: object) -> str:
    """Return ``name`` if it is a relative path like ``reports/2026/q1.json``.

    At most 512 characters; ``/``-separated segments, none empty, ``.`` or ``..``; no
    leading ``/``, no backslash, no NUL or other control character. Raises
    InvalidInputError (InvalidTypeError if not a str) naming the problem.
    """
    if not isinstance(name, str):
        raise InvalidTypeError(f"artifact name must be a str, not {type(name).__name__}")
    problem = None
    if not name or len(name) > 512:
        problem = "it must be 1-512 characters"
    elif name.startswith("/"):
        problem = "it must be relative (no leading '/')"
    elif "\\" in name:
        problem = "it must not contain a backslash"
    elif _CONTROL.search(name):
        problem = "it must not contain NUL, control characters or lone surrogates"
    elif any(segment in ("", ".", "..") for segment in name.split("/")):
        problem = "no segment may be empty, '.' or '..'"
    if problem:
        raise InvalidInputError(f"invalid artifact name {shown(name)}: {problem}")
    return name


_LEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}")


def validate_lease_name(name: object) -> str:
    """1-200 characters of ``A-Z a-z 0-9 . _ : / @ -``, starting with a letter or digit."""
    rule = "use 1-200 characters of letters, digits and '._:/@-', starting with a letter or digit"
    return matching(name, _LEASE_NAME, "lease name", rule)


# -- integers ---------------------------------------------------------------------------


def _shown_int(value: int) -> str:
    # str() of an int past 4300 digits raises ValueError (sys.int_info.str_digits_check_threshold)
    return str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"


def validate_int(
    value: object, what: str, *, minimum: int = INT64_MIN, maximum: int = INT64_MAX
) -> int:
    """Return ``value`` if it is an int (not a bool) from ``minimum`` to ``maximum``;
    the default range is a ``BIGINT`` column's (signed 64 bits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{what} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidInputError(
            f"{what} must be at least {minimum} and at most {maximum}, not {_shown_int(value)}"
        )
    return int(value)


def count(value: object, what: str, *, minimum: int, maximum: int = INT32_MAX) -> int:
    """A version, revision, limit or batch size: an int from ``minimum`` to ``maximum``,
    at most 2**31 - 1 (the ``INTEGER`` columns versions and revisions are stored in)."""
    return validate_int(value, what, minimum=minimum, maximum=min(maximum, INT32_MAX))


# -- durations --------------------------------------------------------------------------


def validate_seconds(
    value: object, what: str, *, maximum: float, allow_zero: bool = False
) -> float:
    """A number of seconds (int or float, not bool), finite, > 0 (>= 0 with
    ``allow_zero``) and at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    # compared before any float(): a huge int does not convert (OverflowError)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= maximum and math.isfinite(value)):
        low = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{what} must be {low} and at most {maximum:g} seconds")
    return float(value)


def expiry(ttl: object, now: datetime) -> datetime | None:
    """``now + ttl`` for a TTL in seconds (int or float) or a timedelta; must be > 0."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float | timedelta):
        raise InvalidTypeError(f"ttl must be seconds or a timedelta, not {type(ttl).__name__}")
    try:
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        if not math.isfinite(seconds) or seconds <= 0:
            raise InvalidInputError(f"ttl must be a positive, finite duration, not {ttl!r:.60}")
        return now + timedelta(seconds=seconds)
    except OverflowError:  # an int past float range, or past datetime's year 9999
        raise InvalidInputError("ttl is too large") from None


def text_list(values: object, *, item: str, max_length: int, max_items: int) -> tuple[str, ...]:
    """Tags and the like: an iterable (not a str) of texts of 1-``max_length``
    characters; duplicates dropped (first occurrence kept), at most ``max_items`` left."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidTypeError(f"{item}s must be a list or tuple of str")
    result: dict[str, None] = {}
    for value in values:
        result[validate_text(value, item, max_length=max_length)] = None
        if len(result) > max_items:
            raise InvalidInputError(f"at most {max_items} {item}s")
    return tuple(result)
