"""Page cursors: one opaque codec for every paginated method (keyset pagination).

A cursor is the URL-safe base64 of a JSON array of the last item's sort key. What a
caller hands back is checked like any other input: a non-str is InvalidTypeError;
anything this codec did not produce, or whose values could not be a sort key (the
wrong types, text no database can hold, integers outside 32 bits: every integer sort
key is an ``INTEGER`` column, a state's version), is InvalidInputError.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson

from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.validation import INT32_MAX, shown, unstorable

__all__ = ["cursor_key", "decode_cursor", "encode_cursor"]


def encode_cursor(*values: str | int) -> str:
    """The cursor of a page that ends at sort key ``values``."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode()


def decode_cursor(cursor: object, kinds: Sequence[type]) -> list[Any] | None:
    """The sort key in ``cursor``, one value of each of ``kinds``; ``None`` for ``None``."""
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise InvalidTypeError(
            f"cursor must be a str (a page's next_cursor), not {type(cursor).__name__}"
        )
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error):  # non-ASCII, bad base64, not JSON
        values = None
    if not (
        isinstance(values, list)
        and len(values) == len(kinds)
        and all(_fits(value, kind) for value, kind in zip(values, kinds, strict=True))
    ):
        raise InvalidInputError(f"invalid cursor {shown(cursor)}")
    return values


def cursor_key(cursor: object) -> str:
    """The one str a cursor of a page ordered by name holds."""
    values = decode_cursor(cursor, [str])
    if values is None:
        raise InvalidTypeError("cursor must be a str (a page's next_cursor), not NoneType")
    return str(values[0])


def _fits(value: object, kind: type) -> bool:
    if type(value) is not kind:
        return False
    if isinstance(value, str):
        return unstorable(value) is None
    if isinstance(value, int):
        return -INT32_MAX - 1 <= value <= INT32_MAX
    return True
