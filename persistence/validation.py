"""Validation of names and slugs, shared by every repository."""

from __future__ import annotations

import keyword
import re
import unicodedata

from persistence.errors import InvalidInputError, InvalidTypeError

__all__ = ["validate_artifact_name", "validate_slug", "validate_workflow_name"]

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
            f"invalid workflow name {name!r}: use a Python identifier (not a keyword) "
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
        raise InvalidInputError(f"invalid artifact name {name!r}: {problem}")
    return name
