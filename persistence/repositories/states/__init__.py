"""Versioned agent state: statements, the repository, checkpoints and retention."""

from persistence.repositories.states.repository import StateRepository

__all__ = ["StateRepository"]
