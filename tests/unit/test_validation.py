"""Slug validation: 1-63 characters of a-z, 0-9 and '-', no leading or trailing '-'."""

from __future__ import annotations

import pytest

from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.validation import validate_slug


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
