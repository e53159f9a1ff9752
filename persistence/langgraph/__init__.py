"""LangGraph checkpointer and store backed by persistence (extra ``persistence[langgraph]``).

>>> from persistence.langgraph import PersistenceSaver, AsyncPersistenceSaver
>>> saver = PersistenceSaver(db, tenant="acme", workspace="default")  # doctest: +SKIP

See docs/langgraph.md.
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from persistence.errors import ConfigurationError

    raise ConfigurationError(
        "persistence.langgraph needs LangGraph: pip install 'persistence[langgraph]'"
    ) from exc

from persistence.langgraph.savers import AsyncPersistenceSaver, PersistenceSaver
from persistence.langgraph.stores import AsyncPersistenceStore, PersistenceStore

__all__ = ["AsyncPersistenceSaver", "AsyncPersistenceStore", "PersistenceSaver", "PersistenceStore"]
