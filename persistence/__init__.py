"""persistence: a multi-tenant persistence layer for AI-agent platforms."""

from persistence.database import Database
from persistence.database_async import AsyncDatabase
from persistence.settings import Settings

__all__ = ["AsyncDatabase", "Database", "Settings"]
