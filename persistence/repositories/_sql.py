"""Building blocks every repository's statements share."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql

__all__ = ["upsert"]


def upsert(table: Any) -> Any:
    """``INSERT`` with ``on_conflict_do_nothing`` / ``on_conflict_do_update``: PostgreSQL's
    construct, which SQLite's compiler renders the same way (one form for both backends)."""
    return postgresql.insert(table)
