"""What every tenant-scoped repository is given: the session and the bound scope."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, func, literal_column, select
from sqlalchemy.orm import Session

from persistence._executor import Statement, run_scalar
from persistence.errors import ReadOnlyError
from persistence.settings import Settings

__all__ = ["Scope"]


class _Transaction(Protocol):
    @property
    def session(self) -> Session: ...

    connection: Connection | None


@dataclass(frozen=True, slots=True)
class Scope:
    """One tenant + workspace inside one transaction.

    Repositories filter every query by ``tenant_id`` (and ``workspace_id`` where the
    table has it) and never commit: the unit of work owns the transaction.
    ``session`` is built on first use; PostgreSQL hot paths run on ``connection``
    through :mod:`persistence._executor` without it.
    """

    transaction: _Transaction
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID
    settings: Settings
    dialect: str
    on_commit: Callable[[Callable[[], None]], None]

    @property
    def session(self) -> Session:
        return self.transaction.session

    @property
    def connection(self) -> Connection:
        """The transaction's connection (PostgreSQL), or the session's (SQLite)."""
        connection = self.transaction.connection
        return self.session.connection() if connection is None else connection

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def require_writable(self, what: str) -> None:
        """Raise ReadOnlyError if this transaction is read-only.

        The database refuses every write statement of a read-only unit of work (SQLSTATE
        25006, translated by the executor). This is for a write method that can end
        without sending one (an identical import, an unchanged save, a value already
        stored): without it, such a call would succeed or fail depending on the data.
        One query, on those paths only.
        """
        if run_scalar(self.connection, _READ_ONLY[self.dialect], {}):
            raise ReadOnlyError(f"this unit of work is read-only: {what}() is a write method")


# How each backend marks a read-only unit of work (Database._enter_scope): PostgreSQL
# begins it READ ONLY, SQLite sets PRAGMA query_only for it.
_READ_ONLY = {
    "postgresql": Statement(
        select((func.current_setting("transaction_read_only") == "on").label("read_only")),
        "scope_read_only",
    ),
    "sqlite": Statement(
        select(literal_column("query_only")).select_from(func.pragma_query_only()),
        "scope_read_only",
    ),
}
