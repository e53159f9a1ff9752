"""SQLAlchemy models, one module per aggregate; importing this registers every table."""

from persistence.models import (
    artifacts,
    langgraph,
    leases,
    runs,
    states,
    stores,
    tenancy,
    workflows,
)
from persistence.models.base import Base, metadata

__all__ = [
    "Base",
    "artifacts",
    "langgraph",
    "leases",
    "metadata",
    "runs",
    "states",
    "stores",
    "tenancy",
    "workflows",
]
