"""Base classes of the immutable records handed to callers."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Page", "Record"]

T = TypeVar("T")


class Record(BaseModel):
    """An immutable snapshot of stored data; never a live ORM object."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a listing. Pass ``next_cursor`` back as ``cursor`` for the next
    page; it is ``None`` on the last page. Cursors are opaque strings."""

    model_config = ConfigDict(frozen=True)

    items: list[T]
    next_cursor: str | None = None
