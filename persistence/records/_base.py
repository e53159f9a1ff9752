"""Base classes of the immutable records handed to callers."""

from __future__ import annotations

from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Page", "Record"]

T = TypeVar("T")


class Record(BaseModel):
    """An immutable snapshot of stored data; never a live ORM object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def of(cls, **values: Any) -> Self:
        """The record of values that are valid already (a row of ours, just written or
        read back), every field given: what ``model_construct`` builds, at a quarter of
        its cost (it also walks the fields for defaults and aliases). A record is built
        for every row a hot path returns."""
        record = cls.__new__(cls)
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", set(values))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    @classmethod
    def from_row(cls, row: Any, /, **values: Any) -> Self:
        """The record of a row whose columns are named like the record's fields, with
        ``values`` for the fields that differ (a JSON list made a tuple, a renamed
        column); see :meth:`of`."""
        for name in cls.model_fields:
            if name not in values:
                values[name] = getattr(row, name)
        return cls.of(**values)


class Page(BaseModel, Generic[T]):
    """One page of a listing. Pass ``next_cursor`` back as ``cursor`` for the next
    page; it is ``None`` on the last page. Cursors are opaque strings."""

    model_config = ConfigDict(frozen=True)

    items: list[T]
    next_cursor: str | None = None
