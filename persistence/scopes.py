"""Scope tokens: a unit of work's scope (tenant, workspace, read-only or not, expiry),
signed, as PostgreSQL's row-level security verifies it (migration 0010).

A token is text, its fields joined by ``.`` (no field may hold one)::

    p1.<key id>.<kind>.<tenant>.<workspace>.<mode>.<expires>.<bind>.<signature>

``kind`` is ``i`` (tenant and workspace are ids, 32 hex digits each) or ``s`` (slugs:
``persistence_enter()`` resolves them and signs the scope again by id, which is what the
policies accept); ``mode`` is ``rw`` or ``ro``; ``expires`` is Unix seconds; ``bind`` is
the SHA-256 (hex) of what else the token was issued with (an access descriptor's other
fields) or ``-``; ``signature`` is HMAC-SHA256 (hex) of everything before it, keyed by
the scope key ``key id``. The service that opens units of work holds the key (the
``scope_key`` setting); the database holds the same key where only its owner and the
``SECURITY DEFINER`` functions read it (``scope_keys``), as the two HMAC pads, so that it
can verify with nothing but the built-in ``sha256()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from persistence.errors import ConfigurationError, ScopeTokenError

__all__ = [
    "KEY_ID",
    "ScopeClaims",
    "ScopeKey",
    "digest",
    "mint",
    "new_key",
    "parse",
    "verify",
]

VERSION = "p1"
KEY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_BLOCK = 64  # SHA-256's block size: the HMAC pads are this long


@dataclass(frozen=True)
class ScopeKey:
    """A scope signing key: its id and its secret (bytes; never printed)."""

    id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"ScopeKey(id={self.id!r}, secret=***)"

    @classmethod
    def parse(cls, text: str) -> ScopeKey:
        """``<key id>:<secret, URL-safe base64>``, as ``persistence db scope-key add``
        prints it (the ``scope_key`` setting)."""
        kid, sep, encoded = text.strip().partition(":")
        try:
            secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            secret = b""
        if not sep or not KEY_ID.fullmatch(kid) or not 16 <= len(secret) <= _BLOCK:
            raise ConfigurationError(
                "scope_key (PERSISTENCE_SCOPE_KEY) must be '<key id>:<secret>' as "
                "`persistence db scope-key add` prints it"
            )
        return cls(kid, secret)

    def text(self) -> str:
        """The form :meth:`parse` reads."""
        return f"{self.id}:{base64.urlsafe_b64encode(self.secret).decode().rstrip('=')}"

    def pads(self) -> tuple[bytes, bytes]:
        """HMAC's inner and outer padded keys: what the database stores (computed once
        per key, not per token signed)."""
        found: tuple[bytes, bytes] | None = self.__dict__.get("_pads")
        if found is None:
            padded = self.secret.ljust(_BLOCK, b"\0")
            found = bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)
            object.__setattr__(self, "_pads", found)  # (a cache: not a field)
        return found


def new_key(kid: str) -> ScopeKey:
    """A fresh random 256-bit key named ``kid``."""
    if not KEY_ID.fullmatch(kid):
        raise ConfigurationError(
            f"invalid scope key id {kid!r}: 1-32 characters of a-z, 0-9, '_' and '-'"
        )
    return ScopeKey(kid, secrets.token_bytes(32))


@dataclass(frozen=True)
class ScopeClaims:
    """What a token says (not yet verified by :func:`parse`)."""

    key_id: str
    kind: Literal["i", "s"]
    tenant: str  # id (32 hex digits) or slug
    workspace: str
    read_only: bool
    expires: int
    bind: str
    signature: str
    message: str

    @property
    def ids(self) -> tuple[uuid.UUID, uuid.UUID]:
        return uuid.UUID(self.tenant), uuid.UUID(self.workspace)


def _sign(pads: tuple[bytes, bytes], message: str) -> str:
    inner = hashlib.sha256(pads[0] + message.encode()).digest()
    return hashlib.sha256(pads[1] + inner).hexdigest()


def mint(
    key: ScopeKey,
    tenant: str | uuid.UUID,
    workspace: str | uuid.UUID,
    *,
    read_only: bool = False,
    expires: int,
    bind: str = "-",
) -> str:
    """A token for the scope: by id when ``tenant`` and ``workspace`` are UUIDs, else by
    slug; valid until ``expires`` (Unix seconds)."""
    if isinstance(tenant, uuid.UUID) and isinstance(workspace, uuid.UUID):
        kind, t, w = "i", tenant.hex, workspace.hex
    else:
        kind, t, w = "s", str(tenant), str(workspace)
    mode = "ro" if read_only else "rw"
    message = f"{VERSION}.{key.id}.{kind}.{t}.{w}.{mode}.{int(expires)}.{bind}"
    return f"{message}.{_sign(key.pads(), message)}"


def parse(token: object) -> ScopeClaims:
    """The claims of ``token``, its form checked (not its signature): ScopeTokenError."""
    if not isinstance(token, str) or len(token) > 512:
        raise ScopeTokenError("malformed scope token")
    parts = token.split(".")
    if len(parts) != 9 or parts[0] != VERSION:
        raise ScopeTokenError("malformed scope token")
    _, kid, kind, t, w, mode, expires, bind, signature = parts
    ident = _HEX32 if kind == "i" else _SLUG if kind == "s" else None
    well_formed = (
        ident is not None
        and KEY_ID.fullmatch(kid)
        and ident.fullmatch(t)
        and ident.fullmatch(w)
        and mode in ("rw", "ro")
        and expires.isdigit()
        and (bind == "-" or re.fullmatch(r"[0-9a-f]{64}", bind))
        and re.fullmatch(r"[0-9a-f]{64}", signature)
    )
    if not well_formed:
        raise ScopeTokenError("malformed scope token")
    message = token[: -len(signature) - 1]
    return ScopeClaims(kid, kind, t, w, mode == "ro", int(expires), bind, signature, message)  # type: ignore[arg-type]


def verify(
    token: object, pads: dict[str, tuple[bytes, bytes]], now: float | None = None
) -> ScopeClaims:
    """The claims of ``token`` once its signature (by one of ``pads``, per key id: the
    keys not retired) and its expiry hold; ScopeTokenError if not. What the database's
    ``persistence_scope()`` checks, for SQLite (which has no row-level security)."""
    claims = parse(token)
    found = pads.get(claims.key_id)
    if found is None or not hmac.compare_digest(_sign(found, claims.message), claims.signature):
        raise ScopeTokenError("the scope token's signature is not valid")
    if claims.expires <= (time.time() if now is None else now):
        raise ScopeTokenError("the scope token has expired", expired=True)
    return claims


def digest(*fields: str | None) -> str:
    """What a token's ``bind`` holds for ``fields`` (an access descriptor's)."""
    text = "\x1f".join("\x00" if f is None else f for f in fields)
    return hashlib.sha256(text.encode()).hexdigest()
