"""The scope tokens a Database's units of work enter with (``persistence.scopes``).

A service Database signs them with its key (the ``scope_key`` setting, or, on a
Database that can administer, the database's own ``auto`` key), by slug for a scope it
has not entered yet and by id after; a token is reused until a tenth of its lifetime
has passed, so every unit of work starts with at least 90% of ``scope_token_ttl``
ahead of it. A Database opened from an access descriptor holds that descriptor's token
and signs nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from persistence.errors import ConfigurationError
from persistence.scopes import ScopeKey, mint

__all__ = ["Signer"]

_LIMIT = 4096
_NO_KEY = (
    "units of work on PostgreSQL need a scope signing key: set scope_key "
    "(PERSISTENCE_SCOPE_KEY) to a key `persistence db scope-key add` printed, or give "
    "this Database the owner URL (owner_database_url) so that it uses the database's own "
    "(docs/tenancy.md)"
)


class Signer:
    __slots__ = ("_tokens", "fixed", "key", "ttl")

    def __init__(self, key: ScopeKey | None, ttl: float):
        self.key = key
        self.ttl = ttl
        self.fixed: str | None = None  # an access descriptor's token
        self._tokens: dict[tuple[Any, Any, bool], tuple[str, float]] = {}

    def token(
        self, tenant: str, workspace: str, read_only: bool, ids: tuple[Any, Any] | None
    ) -> str:
        """The token of a unit of work of ``tenant``/``workspace`` (by ``ids``, the entry's
        (tenant_id, workspace_id), when known)."""
        if self.fixed is not None:
            return self.fixed
        scope: tuple[Any, Any, bool] = (*(ids or (tenant, workspace)), read_only)
        found = self._tokens.get(scope)
        now = time.time()
        if found is not None and now < found[1]:
            return found[0]
        return self._mint(scope, now)

    def _mint(self, scope: tuple[Any, Any, bool], now: float) -> str:
        if self.key is None:
            raise ConfigurationError(_NO_KEY)
        tenant, workspace, read_only = scope
        token = mint(
            self.key, tenant, workspace, read_only=read_only, expires=int(now + self.ttl) + 1
        )
        if len(self._tokens) >= _LIMIT:
            self._tokens.clear()
        self._tokens[scope] = (token, now + self.ttl / 10)
        return token

    def issue(
        self,
        ids: tuple[uuid.UUID, uuid.UUID],
        *,
        read_only: bool,
        ttl: float,
        bind: str,
    ) -> tuple[str, int]:
        """A token for an access descriptor (``bind``: its other fields' digest) and its
        expiry (Unix seconds); ``persistence._scoping.access`` refuses a descriptor's
        Database before it asks."""
        if self.key is None:
            raise ConfigurationError(_NO_KEY)
        expires = int(time.time() + ttl)
        token = mint(self.key, ids[0], ids[1], read_only=read_only, expires=expires, bind=bind)
        return token, expires
