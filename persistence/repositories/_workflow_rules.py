"""Rules for workflows: what a valid name, source, description and tag list is, and the
search score. No database access here."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence

from persistence.codecs import checksum
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.records import WorkflowRecord
from persistence.validation import count, validate_text, validate_workflow_name

__all__ = [
    "WORD",
    "check_description",
    "check_tags",
    "check_text",
    "score",
    "validate_revision",
    "validate_source",
]

_MAX_TAGS = 64
_MAX_TAG = 100
_MAX_DESCRIPTION = 10_000
WORD = re.compile(r"[^\W_]+")  # words: letters and digits; "_" separates


def validate_source(source: object, *, what: str = "workflow source") -> str:
    """Return ``source`` if it parses as Python and defines a top-level ``run`` function.

    Raises InvalidInputError naming the line of a syntax error; never executes anything.
    """
    if not isinstance(source, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(source).__name__}")
    try:
        source.encode("utf-8")
        tree = ast.parse(source)
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid UTF-8 text: {exc.reason}") from None
    except SyntaxError as exc:
        raise InvalidInputError(f"{what}: line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # NUL bytes
        raise InvalidInputError(f"{what}: line 1: {exc}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run":
            return source
    last = tree.body[-1].end_lineno if tree.body else 1
    raise InvalidInputError(
        f"{what}: line {last}: no top-level `def run(...)` or `async def run(...)`"
    )


def check_text(value: object, what: str, limit: int) -> str:
    """A str of at most ``limit`` characters (maybe empty), without NUL or lone surrogates."""
    return validate_text(value, what, max_length=limit, min_length=0)


def check_tags(tags: object) -> tuple[str, ...]:
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise InvalidTypeError("tags must be a sequence of str (not a single str)")
    result = tuple(check_text(tag, "a tag", _MAX_TAG) for tag in tags)
    if len(result) > _MAX_TAGS or any(not tag.strip() for tag in result):
        raise InvalidInputError(f"tags: at most {_MAX_TAGS} non-blank tags")
    if len(set(result)) != len(result):
        raise InvalidInputError(f"tags must not repeat: {list(result)!r}")
    return result


def score(query: str, name: str, description: str, tags: Sequence[str]) -> int:
    """The deterministic relevance of one workflow for ``query`` (0: no match).

    Whole query: equal to the name 100, a prefix of it 50, inside it 30. Each query
    word (letters and digits, case-insensitive): a ``_``-separated part of the name 10, else inside
    the name 5; equal to a tag 8, else inside a tag 4; a word of the description 3,
    else inside it 1.
    """
    q, lname, ldesc = query.strip().lower(), name.lower(), description.lower()
    ltags = [t.lower() for t in tags]
    total = 0
    if q:
        total += 100 if q == lname else 50 if lname.startswith(q) else 30 if q in lname else 0
    name_parts = set(lname.split("_"))
    desc_words = set(WORD.findall(ldesc))
    for word in WORD.findall(q):
        total += 10 if word in name_parts else 5 if word in lname else 0
        total += 8 if word in ltags else 4 if any(word in t for t in ltags) else 0
        total += 3 if word in desc_words else 1 if word in ldesc else 0
    return total


def validate_revision(record: WorkflowRecord) -> WorkflowRecord:
    """Check every field of a revision given for import (name, source, description,
    tags, revision number, checksum); return it with tags as a tuple.

    Raises InvalidInputError naming the problem; touches no database.
    """
    name, source = validate_workflow_name(record.name), validate_source(record.source)
    description = check_text(record.description, "description", _MAX_DESCRIPTION)
    tags = check_tags(record.tags)
    count(record.revision, "revision", minimum=1)
    if record.checksum != checksum(source.encode("utf-8")):
        raise InvalidInputError(
            f"workflow {name!r} revision {record.revision}: checksum does not match the source"
        )
    if record.created_at.tzinfo is None:
        raise InvalidInputError(f"workflow {name!r}: created_at must be timezone-aware")
    return record.model_copy(update={"description": description, "tags": tags})


def check_description(value: object) -> str:
    return check_text(value, "description", _MAX_DESCRIPTION)
