"""Validation of names and slugs, shared by every repository."""

from __future__ import annotations

import re

from persistence.errors import InvalidInputError, InvalidTypeError

__all__ = ["validate_slug"]

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def validate_slug(slug: object, *, what: str = "slug") -> str:
    """Return ``slug`` if it is 1-63 chars of ``a-z0-9-`` not starting or ending with ``-``."""
    if not isinstance(slug, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(slug).__name__}")
    if not _SLUG.fullmatch(slug):
        raise InvalidInputError(
            f"invalid {what} {slug!r}: use 1-63 characters of a-z, 0-9 and '-', "
            "not starting or ending with '-'"
        )
    return slug
