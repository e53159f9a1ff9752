"""What every tenant-scoped repository is given: the session and the bound scope."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from persistence.settings import Settings

__all__ = ["Scope"]


@dataclass(frozen=True, slots=True)
class Scope:
    """One tenant + workspace inside one transaction.

    Repositories filter every query by ``tenant_id`` (and ``workspace_id`` where the
    table has it) and never commit: the unit of work owns the transaction.
    """

    session: Session
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID
    settings: Settings
    dialect: str
    on_commit: Callable[[Callable[[], None]], None]

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"
