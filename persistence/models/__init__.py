"""SQLAlchemy models, one module per aggregate; importing this registers every table."""

from persistence.models import tenancy
from persistence.models.base import Base, metadata

__all__ = ["Base", "metadata", "tenancy"]
