"""Base class of the immutable records handed to callers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """An immutable snapshot of stored data; never a live ORM object."""

    model_config = ConfigDict(frozen=True, extra="forbid")
