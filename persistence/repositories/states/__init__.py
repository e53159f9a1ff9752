"""Versioned agent state: statements, the repository, checkpoints and retention."""

from persistence.repositories.states.repository import StateRepository
from persistence.repositories.states.repository_async import AsyncStateRepository

__all__ = ["AsyncStateRepository", "StateRepository"]
