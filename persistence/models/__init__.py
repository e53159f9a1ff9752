"""SQLAlchemy models, one module per aggregate; importing this registers every table."""

from persistence.models import artifacts, runs, tenancy, workflows
from persistence.models.base import Base, metadata

__all__ = ["Base", "artifacts", "metadata", "runs", "tenancy", "workflows"]
