"""One-dimensional PostgreSQL arrays (``bytea[]``, ``text[]``, ``bigint[]``), encoded in
the binary wire format here, for the statements that pass a whole batch of rows as a
few array parameters (``unnest(CAST(:values AS bytea[]), ...)``).

psycopg dumps a Python list by inspecting it (its element type, its nesting, a dumper
per element), in Python code: for the short lists of a LangGraph checkpoint or task
write, that costs more client CPU than the rest of the statement. The arrays here are
the same bytes a binary ``ListDumper`` sends, built by one pass over the items, and
carry their type's oid: the server casts them like any other parameter.

An item of the wrong type, a text PostgreSQL cannot store (NUL, a lone surrogate) or an
integer outside ``bigint`` is InvalidInputError before anything is sent. ``None`` is
``NULL``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from persistence.errors import InvalidInputError

__all__ = ["BigintArray", "ByteaArray", "TextArray", "bigint_array", "bytea_array", "text_array"]

_HEADER = struct.Struct("!iiIii")  # dimensions, has nulls, element oid, length, lower bound
_EMPTY = struct.Struct("!iiI")  # an empty array has no dimension
_NULL = b"\xff\xff\xff\xff"
_BIGINT = struct.Struct("!q")


class ByteaArray(bytes):
    """A ``bytea[]`` parameter, its wire bytes (see :func:`bytea_array`)."""


class TextArray(bytes):
    """A ``text[]`` parameter, its wire bytes (see :func:`text_array`)."""


class BigintArray(bytes):
    """A ``bigint[]`` parameter, its wire bytes (see :func:`bigint_array`)."""


def _encoded(
    items: Iterable[Any], oid: int, data_of: Callable[[Any, str], bytes], what: str
) -> bytes:
    """The wire bytes of the array of ``items`` of element type ``oid``: each item's
    ``data_of`` (which refuses a bad one) after its length, ``None`` as NULL."""
    parts: list[bytes] = []
    count = nulls = 0
    for item in items:
        count += 1
        if item is None:
            parts.append(_NULL)
            nulls = 1
            continue
        data = data_of(item, what)
        parts += (len(data).to_bytes(4, "big"), data)
    if not count:
        return _EMPTY.pack(0, 0, oid)
    return _HEADER.pack(1, nulls, oid, count, 1) + b"".join(parts)


def _bytea(item: Any, what: str) -> bytes:
    if type(item) is not bytes:
        raise InvalidInputError(f"{what} must be bytes, not {type(item).__name__}")
    return item


def _text(item: Any, what: str) -> bytes:
    if type(item) is not str:
        raise InvalidInputError(f"{what} must be a str, not {type(item).__name__}")
    try:
        data = item.encode()
    except UnicodeEncodeError:
        raise InvalidInputError(f"{what} {item!r} holds a lone surrogate") from None
    if b"\0" in data:
        raise InvalidInputError(f"{what} {item!r} holds a NUL character")
    return data


def _bigint(item: Any, what: str) -> bytes:
    if type(item) is not int or not -(2**63) <= item < 2**63:
        raise InvalidInputError(f"{what} must be an int in bigint's range, not {item!r}")
    return _BIGINT.pack(item)


def bytea_array(items: Iterable[bytes | None], what: str = "value") -> ByteaArray:
    """``items`` (bytes, or None for NULL) as a ``bytea[]`` parameter."""
    return ByteaArray(_encoded(items, 17, _bytea, what))


def text_array(items: Iterable[str | None], what: str = "value") -> TextArray:
    """``items`` (str, or None for NULL) as a ``text[]`` parameter."""
    return TextArray(_encoded(items, 25, _text, what))


def bigint_array(items: Iterable[int | None], what: str = "value") -> BigintArray:
    """``items`` (int, or None for NULL) as a ``bigint[]`` parameter."""
    return BigintArray(_encoded(items, 20, _bigint, what))


def _dumper(cls: type[bytes], array_oid: int) -> type[Dumper]:
    class _Passed(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: Any) -> bytes:
            return obj  # type: ignore[no-any-return]

    _Passed.__name__ = f"{cls.__name__}Dumper"
    return _Passed


# on the global adapters: every connection made after this (ours all are) dumps them so
for _cls, _oid in ((ByteaArray, 1001), (TextArray, 1009), (BigintArray, 1016)):
    psycopg.adapters.register_dumper(_cls, _dumper(_cls, _oid))
