"""Entering a scope with its token, and access descriptors (``persistence.scopes``).

PostgreSQL verifies a unit of work's scope itself: the entry sends the scope token
(``persistence._signer``) and row-level security trusts nothing else. SQLite has no
row-level security: there the API enforces the same rules on a Database opened from
an access descriptor (the token's signature by a key of the database file, its expiry,
its ids, read-only), which is no barrier to anyone who can open the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from persistence import _begin_async, _engines, _enter, _role_check
from persistence._compiled import Statement
from persistence._executor_async import (
    driver_of,
    raise_translated,
    run,
    run_one,
    simple_query,
    sync_of,
)
from persistence.access import AccessDescriptor, describe_access
from persistence.errors import (
    AlreadyExistsError,
    ConfigurationError,
    InvalidInputError,
    ScopeTokenError,
)
from persistence.models.tenancy import ScopeKey as ScopeKeyRow
from persistence.repositories.scope_keys_async import AsyncScopeKeyRepository
from persistence.scopes import verify
from persistence.validation import validate_slug

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase

__all__ = ["access", "enter_scope", "scope_token"]

_VALID_SCOPES: set[tuple[str, str]] = set()
_HAS_TOKEN_ENTRY = _enter.HAS_TOKEN_ENTRY.encode()
_PADS = Statement(
    select(ScopeKeyRow.id, ScopeKeyRow.inner_pad, ScopeKeyRow.outer_pad).where(
        ScopeKeyRow.retired_at.is_(None)
    ),
    "scope_keys",
)


async def _load_key(db: AsyncDatabase, session: AsyncSession | None = None) -> None:
    """Give ``db``'s signer a key: on a Database that can administer, the database's own
    (``auto``, migration 0010). On SQLite, inside a unit of work, read through its
    ``session`` (a second transaction would wait for its lock)."""
    signer = db._signer
    if signer.key is not None or signer.fixed is not None:
        return
    if db.dialect == "sqlite" and session is not None:
        signer.key = await AsyncScopeKeyRepository(session).own_key()
        return
    can_administer = (
        db.dialect == "sqlite" or db.settings.owner_database_url or db.settings.allow_rls_bypass
    )
    if not can_administer:
        return  # (the signer raises the ConfigurationError that says what to set)
    for attempt in (1, 2):
        try:
            async with db.admin() as admin:
                signer.key = await admin.scope_keys.own_key()
            return
        except AlreadyExistsError:  # another process added it meanwhile
            if attempt == 2:
                raise


async def scope_token(
    db: AsyncDatabase, tenant: str, workspace: str, read_only: bool, ids: Any = None
) -> str:
    """The token a unit of work of ``db`` enters ``tenant``/``workspace`` with (none on a
    schema before 0010, which enters by slugs)."""
    if db._legacy_entry:
        return ""
    await _load_key(db)  # (nothing to do once the signer has a key)
    return db._signer.token(tenant, workspace, read_only, ids)


def _validated(tenant: Any, workspace: Any) -> None:
    scope = (tenant, workspace)
    if type(tenant) is not str or type(workspace) is not str or scope not in _VALID_SCOPES:
        validate_slug(tenant, what="tenant slug")
        validate_slug(workspace, what="workspace slug")
        if len(_VALID_SCOPES) >= 4096:
            _VALID_SCOPES.clear()
        _VALID_SCOPES.add(scope)  # a process enters the same few scopes again and again


async def enter_scope(
    db: AsyncDatabase, tx: Any, tenant: str, workspace: str, *, read_only: bool = False
) -> Mapping[Any, Any]:
    """Begin the transaction ``tx`` (a unit of work's) inside ``tenant``/``workspace``;
    the entry row (see ``AsyncDatabase._enter_scope``)."""
    _validated(tenant, workspace)
    connection = tx.connection
    if db.dialect == "postgresql":
        if not db.settings.allow_rls_bypass:
            await _role_check.require_rls_async(connection)
        try:
            entry = await _entry(db, connection, tenant, workspace, read_only)
            m: Mapping[Any, Any] | None = await _begin_async.enter(
                connection, entry, read_only=read_only
            )
        except ConfigurationError:  # (the schema changed meanwhile: look again next time)
            db._legacy_entry = None
            raise
    else:
        params = {"tenant": tenant, "workspace": workspace}
        row = await run_one(connection, _enter.ENTRY["sqlite"], params)
        m = None if row is None else row._asdict()
        if read_only:  # undone when the connection goes back to the pool
            sync_of(connection).connection.info[_engines.QUERY_ONLY] = True
            await connection.execute(text("PRAGMA query_only = ON"))
    entered = _enter.require_entered(m, tenant, workspace)
    if db._access is not None:
        await _check_access(db, connection, entered)
    return entered


async def _entry(
    db: AsyncDatabase, connection: Any, tenant: str, workspace: str, read_only: bool
) -> tuple[Statement, Mapping[str, Any]]:
    """The entry's statement and parameters: by scope token; by slugs on a schema not
    yet at 0010 (code deployed before the upgrade keeps working until it runs; the
    first entry after it fails once with ConfigurationError, the next uses a token)."""
    if db._legacy_entry is None:
        try:
            found = (await simple_query(driver_of(connection), _HAS_TOKEN_ENTRY))[-1]
        except psycopg.Error as exc:  # (a dead pooled connection: begin() tries another)
            await raise_translated(connection, _enter.HAS_TOKEN_ENTRY, (), exc)
        db._legacy_entry = found.get_value(0, 0) != b"t"
    if db._legacy_entry:
        if db._access is not None:
            raise ConfigurationError(
                "the database schema predates scope tokens (migration 0010): an access "
                "descriptor cannot be verified; run `persistence db upgrade`"
            )
        return _enter.LEGACY_ENTRY, {"tenant": tenant, "workspace": workspace}
    known = db._known_scopes.get(tenant, workspace)
    ids = None if known is None else _enter.entry_ids(known)
    token = await scope_token(db, tenant, workspace, read_only, ids)
    return _enter.ENTRY["postgresql"], {"token": token}


async def _check_access(db: AsyncDatabase, connection: Any, entered: Mapping[Any, Any]) -> None:
    """A Database opened from a descriptor entered the descriptor's scope: on SQLite, the
    checks PostgreSQL's ``persistence_enter`` made (signature, key, expiry, ids)."""
    descriptor = db._access
    assert descriptor is not None
    claims = descriptor.claims()
    if db.dialect == "sqlite":
        pads = {row[0]: (bytes(row[1]), bytes(row[2])) for row in await run(connection, _PADS, {})}
        claims = verify(descriptor.token, pads)
    if _enter.entry_ids(entered) != claims.ids:
        raise ScopeTokenError("the access descriptor's scope token is for another scope")


async def access(
    db: AsyncDatabase,
    tenant: str,
    workspace: str,
    *,
    ttl: float,
    read_only: bool,
    ids: tuple[Any, Any] | None = None,
    session: AsyncSession | None = None,
) -> AccessDescriptor:
    """An access descriptor of ``tenant``/``workspace`` valid for ``ttl`` seconds (the
    scope's ``ids`` when known: a unit of work of it is open; else one is entered)."""
    if db._access is not None:
        raise ConfigurationError(
            "a Database opened from an access descriptor cannot issue access descriptors"
        )
    if not 1 <= ttl <= 366 * 86400:
        raise InvalidInputError(f"ttl must be 1 to {366 * 86400} seconds, not {ttl!r}")
    _validated(tenant, workspace)
    if ids is None:
        async with db.unit_of_work(tenant, workspace, read_only=True) as uow:
            ids = uow.scope.tenant_id, uow.scope.workspace_id
    await _load_key(db, session)
    signer = db._signer

    def sign(bind: str) -> tuple[str, int]:
        return signer.issue(ids, read_only=read_only, ttl=ttl, bind=bind)

    return describe_access(db.settings, tenant, workspace, sign, read_only=read_only)
