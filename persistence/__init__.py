"""persistence: a multi-tenant persistence layer for AI-agent platforms."""

from persistence.database import Database
from persistence.settings import Settings

__all__ = ["Database", "Settings"]
