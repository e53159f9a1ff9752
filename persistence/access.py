"""The access descriptor: a capability for one tenant + workspace scope.

An executor in a subprocess or container is handed a small JSON document and opens
that scope, and nothing else, with ``Database.from_access(...)``: the descriptor
carries a scope token (``persistence.scopes``) signed for exactly its tenant and
workspace ids, its read-only flag and its expiry, and bound to every other field (the
token's ``bind`` is their digest), so that editing any field makes it invalid. It
carries no key and no password: passwords come from that process's own settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy.engine import URL, make_url

from persistence import scopes
from persistence.errors import ConfigurationError, InvalidInputError, ScopeTokenError
from persistence.records import Record
from persistence.scopes import ScopeClaims
from persistence.settings import Settings
from persistence.validation import validate_slug

__all__ = ["ACCESS_FORMAT", "AccessDescriptor", "describe_access", "settings_for_access"]

ACCESS_FORMAT: Literal["persistence-access/2"] = "persistence-access/2"


class AccessDescriptor(Record):
    """A frozen, JSON-serializable capability for one tenant + workspace scope.

    ``database_url`` and ``redis_url`` never carry a password. Build one with
    ``uow.access()`` or ``db.access(tenant, workspace, ttl=..., read_only=...)``; open it
    with ``Database.from_access(descriptor)`` (or its JSON text, or the parsed dict).
    """

    format: Literal["persistence-access/2"] = ACCESS_FORMAT
    database_url: str
    tenant: str
    workspace: str
    redis_url: str | None = None
    redis_key_prefix: str = "persistence"
    read_only: bool = False
    expires_at: datetime
    token: str

    def bind(self) -> str:
        """The digest the token's ``bind`` must hold: of every field but the token."""
        return bound_digest({field: getattr(self, field) for field in _BOUND})

    def claims(self, now: float | None = None) -> ScopeClaims:
        """The token's claims once they match every field (ScopeTokenError if not: the
        descriptor was edited) and it has not expired (ScopeTokenError, ``expired``).
        Its signature is the database's to verify (``persistence_enter``)."""
        claims = scopes.parse(self.token)
        matches = (
            claims.kind == "i"
            and claims.bind == self.bind()
            and claims.read_only == self.read_only
            and claims.expires == int(self.expires_at.timestamp())
        )
        if not matches:
            raise ScopeTokenError(
                "the access descriptor does not match its signed scope: it was edited "
                "(ask its issuer for a new one)"
            )
        if claims.expires <= (datetime.now(UTC).timestamp() if now is None else now):
            raise ScopeTokenError(
                f"the access descriptor for {self.tenant}/{self.workspace} expired at "
                f"{self.expires_at.isoformat()} (ask its issuer for a new one)",
                expired=True,
            )
        return claims

    def to_json(self) -> str:
        """Compact JSON with sorted keys (stable across processes)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, value: AccessDescriptor | str | bytes | Mapping[str, Any]) -> AccessDescriptor:
        """Accept a descriptor, its JSON text or the parsed mapping.

        Raises InvalidInputError when it is not a well-formed descriptor.
        """
        if isinstance(value, AccessDescriptor):
            value.claims()  # (expired since it was parsed?)
            return value
        try:
            data = json.loads(value) if isinstance(value, str | bytes) else dict(value)
            descriptor = cls.model_validate(data)
        except (ValueError, TypeError, ValidationError) as exc:
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise InvalidInputError(f"not an access descriptor: {first}") from None
        validate_slug(descriptor.tenant, what="tenant slug")
        validate_slug(descriptor.workspace, what="workspace slug")
        for url in (descriptor.database_url, descriptor.redis_url):
            if url is not None and _parse(url).password is not None:
                raise InvalidInputError("an access descriptor must not carry a password")
        descriptor.claims()
        return descriptor


# The fields a descriptor's token is bound to (every one but the token's own claims).
_BOUND = ("database_url", "tenant", "workspace", "redis_url", "redis_key_prefix")


def bound_digest(fields: Mapping[str, str | None]) -> str:
    """The ``bind`` of a token issued with ``fields`` (those of :data:`_BOUND`)."""
    return scopes.digest(ACCESS_FORMAT, *(fields[field] for field in _BOUND))


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception:
        raise InvalidInputError("unparseable URL in the access descriptor") from None


def _strip(url: str) -> str:
    parsed = make_url(url)
    parsed = parsed._replace(password=None, username=parsed.username or None)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        # Another process has another working directory: make the file path absolute.
        database = str(parsed.database)
        if not database.startswith("file:"):
            parsed = parsed.set(database=str(Path(database).expanduser().resolve()))
    return parsed.render_as_string(hide_password=False)


def describe_access(
    settings: Settings,
    tenant: str,
    workspace: str,
    sign: Callable[[str], tuple[str, int]],
    *,
    read_only: bool,
) -> AccessDescriptor:
    """The descriptor of ``tenant``/``workspace`` for a Database built from ``settings``;
    ``sign(bind)`` returns its token (bound to ``bind``) and expiry."""
    validate_slug(tenant, what="tenant slug")
    validate_slug(workspace, what="workspace slug")
    fields: dict[str, Any] = {
        "database_url": _strip(settings.database_url),
        "tenant": tenant,
        "workspace": workspace,
        "redis_url": _strip(settings.redis_url) if settings.redis_url else None,
        "redis_key_prefix": settings.redis_key_prefix,
    }
    token, expires = sign(bound_digest(fields))
    expires_at = datetime.fromtimestamp(expires, UTC)
    return AccessDescriptor(**fields, read_only=read_only, expires_at=expires_at, token=token)


def _same_endpoint(a: URL, b: URL) -> bool:
    return (a.get_backend_name(), a.host, a.port, a.username) == (
        b.get_backend_name(),
        b.host,
        b.port,
        b.username,
    )


def _with_password(url: str, explicit: str | None, configured: str | None) -> str:
    """Add this process's password to ``url``: the explicit setting, else the password
    of the configured URL when it names the same host, port and user."""
    parsed = _parse(url)
    password = explicit
    if password is None and configured:
        mine = make_url(configured)
        if mine.password is not None and _same_endpoint(parsed, mine):
            password = str(mine.password)
    if password is None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def settings_for_access(descriptor: AccessDescriptor, base: Settings | None = None) -> Settings:
    """Settings that open ``descriptor``'s database and Redis with passwords from ``base``
    (default: ``Settings()`` from this process's ``PERSISTENCE_*`` environment).

    Passwords: ``database_password`` / ``redis_password`` when set, else the password of
    ``database_url`` / ``redis_url`` when host, port and user match. Tuning settings
    (pool sizes, timeouts, limits, compression) are this process's own.
    """
    base = base if base is not None else Settings()
    db_password = base.database_password.get_secret_value() if base.database_password else None
    redis_password = base.redis_password.get_secret_value() if base.redis_password else None
    redis_url = descriptor.redis_url
    if redis_url is not None:
        redis_url = _with_password(redis_url, redis_password, base.redis_url)
    try:
        return base.model_copy(
            update={
                "database_url": _with_password(
                    descriptor.database_url, db_password, base.database_url
                ),
                "owner_database_url": None,
                "scope_key": None,  # (a descriptor's Database signs nothing)
                "redis_url": redis_url,
                "redis_key_prefix": descriptor.redis_key_prefix,
            }
        )
    except ValueError as exc:  # pragma: no cover - model_copy does not validate
        raise ConfigurationError(str(exc)) from exc
