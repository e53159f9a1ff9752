"""The database: engines, session factories, migrations and the entry points to units of
work (``database.py``, the sync API, is generated from ``database_async.py``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from persistence import _cache_front_async as _cache_front
from persistence import _engines
from persistence import _scoping_async as _scoping
from persistence import migrations as _migrations
from persistence._aio import drain, on_owner  # sync: from persistence.migrations import on_owner
from persistence._cache_front_async import AsyncReadCache
from persistence._deferred_async import KnownScopes
from persistence._signer import Signer
from persistence.access import AccessDescriptor
from persistence.errors import (
    ConfigurationError,
    InvalidInputError,
    translate_errors,
)
from persistence.scopes import ScopeKey
from persistence.settings import Settings, mask_url
from persistence.uow_async import AsyncAdminUnitOfWork, AsyncUnitOfWork

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from persistence.locks_async import AsyncLease, AsyncLeaseBackend
    from persistence.stores_async import AsyncStore

__all__ = ["AsyncDatabase"]
T = TypeVar("T")


def _normalize(url: str) -> URL:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(f"invalid database URL {mask_url(url)!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise ConfigurationError(
        f"unsupported database {backend!r} in {mask_url(url)!r}: use postgresql or sqlite"
    )


class AsyncDatabase:
    """The entry point: lazily built engines, units of work, migrations, stores and leases.

    ``Database(Settings())`` reads ``PERSISTENCE_*``; ``Database.from_url(url)`` is the
    short form. Nothing connects until first use; ``close()`` (or ``with``) disposes.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings if settings is not None else Settings()
        self._url = _normalize(self.settings.database_url)
        owner = self.settings.owner_database_url
        self._owner_url = _normalize(owner) if owner else self._url
        if self._owner_url.get_backend_name() != self._url.get_backend_name():
            raise ConfigurationError("the owner and runtime URLs must use the same database")
        self.dialect = self._url.get_backend_name()
        self._lock = threading.RLock()  # (cache builds the Redis client under it)
        self._engine: AsyncEngine | None = None
        self._owner_engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._owner_session_factory: async_sessionmaker[AsyncSession] | None = None
        # Set by from_access(): units of work are confined to this (tenant, workspace).
        self._access_scope: tuple[str, str] | None = None
        self._redis: Redis | None = None
        self._leases: AsyncLeaseBackend | None = None
        # Scopes entered before, whose units of work defer their entry (PostgreSQL).
        self._known_scopes = KnownScopes()
        self._cache: AsyncReadCache | None = None
        # The scope tokens of its units of work; from_access(): the descriptor's only.
        # (SQLite signs with its file's own key: whoever reads the file reads the key.)
        key = self.settings.scope_key if self.dialect == "postgresql" else None
        self._signer = Signer(
            ScopeKey.parse(key.get_secret_value()) if key else None, self.settings.scope_token_ttl
        )
        self._access: AccessDescriptor | None = None
        # PostgreSQL: whether the schema predates the token entry (0010); None: unknown.
        self._legacy_entry: bool | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        owner_url: str | None = None,
        redis_url: str | None = None,
        **settings: Any,
    ) -> AsyncDatabase:
        """Build from URLs; other keyword arguments are :class:`Settings` fields."""
        return cls(
            Settings(
                database_url=url, owner_database_url=owner_url, redis_url=redis_url, **settings
            )
        )

    @classmethod
    def from_access(
        cls,
        descriptor: AccessDescriptor | str | bytes | Mapping[str, Any],
        settings: Settings | None = None,
    ) -> AsyncDatabase:
        """Open the scope an access descriptor (or its JSON, or its dict) describes.

        Passwords come from ``settings`` (default: this process's ``PERSISTENCE_*``):
        ``database_password``/``redis_password``, else the configured URL's password when
        host, port and user match. ``unit_of_work()`` then defaults to the descriptor's
        tenant and workspace and refuses any other; ``admin()`` is refused.
        Raises InvalidInputError for a malformed descriptor, ScopeTokenError (a
        TenantIsolationError) for an edited or expired one.
        """
        from persistence.access import settings_for_access

        parsed = AccessDescriptor.parse(descriptor)
        db = cls(settings_for_access(parsed, settings))
        db._access_scope = (parsed.tenant, parsed.workspace)
        db._access, db._signer.fixed = parsed, parsed.token
        return db

    async def access(
        self,
        tenant: str,
        workspace: str = "default",
        *,
        ttl: float = 3600,
        read_only: bool = False,
    ) -> AccessDescriptor:
        """An access descriptor for ``tenant``/``workspace``: a capability that opens that
        scope, and nothing else, for ``ttl`` seconds (read-only with ``read_only``). It
        carries a signed scope token, no key and no password. ConfigurationError on a
        Database opened from a descriptor (it cannot issue them)."""
        return await _scoping.access(self, tenant, workspace, ttl=ttl, read_only=read_only)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self.settings.database_url)!r})"

    # -- engines ---------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The runtime engine (on PostgreSQL: the runtime role, subject to RLS)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = _engines.runtime_engine_async(self._url, self.settings)
        return self._engine

    @property
    def owner_engine(self) -> AsyncEngine:
        """The owner engine: migrations and tenant administration."""
        if self._owner_url == self._url:
            return self.engine
        if self._owner_engine is None:
            with self._lock:
                if self._owner_engine is None:
                    self._owner_engine = _engines.owner_engine_async(self._owner_url, self.settings)
        return self._owner_engine

    def _runtime_sessions(self) -> AsyncSession:
        if self._sessions is None:
            self._sessions = async_sessionmaker(
                self.engine, expire_on_commit=False, autoflush=False
            )
        return self._sessions()

    def _owner_sessions(self) -> AsyncSession:
        if self._owner_session_factory is None:
            self._owner_session_factory = async_sessionmaker(
                self.owner_engine, expire_on_commit=False, autoflush=False
            )
        return self._owner_session_factory()

    async def close(self) -> None:
        """Dispose of the engines and their pooled connections (on asyncio, once the
        cleanups of cancelled units of work have returned their connections)."""
        await drain()  # sync:
        for engine in (self._engine, self._owner_engine):
            if engine is not None:
                await engine.dispose()
        self._engine = self._owner_engine = None
        self._sessions = self._owner_session_factory = None
        if self._cache is not None:
            await self._cache.close()
            self._cache = None
        leases, self._leases = self._leases, None
        if leases is not None:
            await leases.close()
        if self._redis is not None:
            await self._redis.aclose()
        self._redis = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- migrations --------------------------------------------------------------

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema (default: to head). Safe to call from many processes at once.

        Alembic is synchronous: on asyncio it runs in a worker thread, on an owner
        connection of its own."""
        await self._schema(_migrations.upgrade, revision)
        self._legacy_entry = None  # (the entry of the new schema: looked up again)
        self._known_scopes.clear()

    async def downgrade(self, revision: str) -> None:
        await self._schema(_migrations.downgrade, revision)
        self._legacy_entry = None
        self._known_scopes.clear()

    async def current_revision(self) -> str | None:
        return await self._schema(_migrations.current)

    async def _schema(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with translate_errors(self.settings.url_label(owner=True)):
            return await on_owner(self, operation, *args, **kwargs)

    def head_revision(self) -> str | None:
        return _migrations.head()

    async def grant_runtime_role(
        self,
        role: str,
        *,
        password: str | None = None,
        create: bool = True,
        execute: bool = True,
    ) -> list[str]:
        """Create (optionally) the runtime role and grant it what services need.

        Runs as the owner; returns the SQL it ran (passwords masked); with
        ``execute=False`` only returns it. PostgreSQL only (ConfigurationError).
        """
        if self.dialect != "postgresql":
            raise ConfigurationError("runtime roles exist only on PostgreSQL")
        return await self._schema(
            _migrations.grant_runtime_role,
            role,
            password=password,
            create=create,
            execute=execute,
        )

    # -- units of work -------------------------------------------------------------

    def admin(self) -> AsyncAdminUnitOfWork:
        """Tenant administration in one transaction (``with db.admin() as admin``)."""
        if self._access_scope is not None:
            raise ConfigurationError("a Database from an access descriptor cannot administer")
        return AsyncAdminUnitOfWork(self)

    def unit_of_work(
        self, tenant: str | None = None, workspace: str | None = None, *, read_only: bool = False
    ) -> AsyncUnitOfWork:
        """One transaction bound to ``tenant`` and ``workspace`` (slugs; workspace defaults
        to ``default``, both to the descriptor's on a Database from ``from_access``).

        ``read_only=True``: every read sees one snapshot of the committed data, taken when
        the unit of work begins (PostgreSQL ``REPEATABLE READ, READ ONLY``; SQLite's
        transaction already is one), and any write raises ReadOnlyError.

        Raises NotFoundError (unknown slug) or TenantSuspendedError on entering;
        ConfigurationError for a scope outside the access descriptor.
        """
        if self._access_scope is not None:
            scope = (
                self._access_scope[0] if tenant is None else tenant,
                self._access_scope[1] if workspace is None else workspace,
            )
            if scope != self._access_scope:
                raise ConfigurationError(
                    f"this Database was opened for {'/'.join(self._access_scope)} only"
                )
            tenant, workspace = scope
            read_only = read_only or (self._access is not None and self._access.read_only)
        if tenant is None:
            raise InvalidInputError("unit_of_work() needs a tenant slug")
        # Only None means "default": an empty slug is refused on entering, never widened.
        workspace = "default" if workspace is None else workspace
        return AsyncUnitOfWork(self, tenant, workspace, read_only=read_only)

    # -- stores and leases -----------------------------------------------------------

    def store(self, tenant: str, name: str, workspace: str = "default") -> AsyncStore:
        """The key/value store ``name`` of a workspace: a MutableMapping whose every
        operation is its own transaction (see docs/stores.md). Created on first write."""
        from persistence.stores_async import AsyncStore

        return AsyncStore.for_database(self, tenant, workspace, name)

    def lease(self, tenant: str, name: str, ttl: float = 30, wait: float = 0) -> AsyncLease:
        """Acquire the lease ``name`` of ``tenant`` for ``ttl`` seconds, waiting up to
        ``wait`` seconds. Raises LockNotAcquiredError (held, or the lock service is
        unreachable). See docs/leases.md."""
        from persistence.locks_async import AsyncLease

        return AsyncLease(self._lease_backend(), tenant, name, ttl, wait)

    def _lease_backend(self) -> AsyncLeaseBackend:
        if self._leases is None:
            from persistence.locks_async import make_backend

            self._leases = make_backend(self)
        return self._leases

    @property
    def redis(self) -> Redis:
        """The Redis client (built on first use, no retries, explicit socket timeouts)."""
        if self._redis is None:
            if not self.settings.redis_url:
                raise ConfigurationError("no redis_url is configured")
            with self._lock:
                if self._redis is None:
                    self._redis = _redis_client(self.settings)
        return self._redis

    @property
    def cache(self) -> AsyncReadCache | None:
        """The read cache (docs/cache.md), or None with ``cache='off'`` (the default):
        ``stats()``, ``flush(tenant_id=None)``."""
        if self.settings.cache == "off":
            return None
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    cache = _cache_front.build(self.settings, lambda: self.redis)
                    cache.on_tenant_changed(self._known_scopes.forget_tenant)
                    self._cache = cache
        return self._cache

    async def _tenant_changed(self, tenant_id: uuid.UUID) -> bool:
        """A tenant was suspended, resumed, renamed or deleted, or one of its workspaces
        renamed or deleted (committed): forget its scopes, and make the read cache's
        entries of it unservable, here and (with a ``redis_url``, whatever this
        database's own ``cache`` setting) in every other process; False if Redis was
        configured and did not take it."""
        self._known_scopes.forget_tenant(str(tenant_id))
        cache = self.cache
        if cache is not None and cache.shared is not None:
            return await cache.tenant_changed(tenant_id)
        if cache is not None:
            await cache.tenant_changed(tenant_id)  # this process's tier
        if not self.settings.redis_url:
            return True
        return await _cache_front.announce(self.settings, lambda: self.redis, tenant_id)

    async def _enter_scope(
        self, tx: Any, tenant: str, workspace: str, *, read_only: bool = False
    ) -> Mapping[Any, Any]:
        """Begin the transaction ``tx`` (a unit of work's) inside ``tenant``/``workspace``
        (with its scope token, on PostgreSQL); the entry row.

        Raises NotFoundError for an unknown tenant or workspace and TenantSuspendedError
        for a suspended tenant. ``persistence._enter.tenant_record`` and
        ``workspace_record`` turn the row into records (built only when asked for).
        """
        return await _scoping.enter_scope(self, tx, tenant, workspace, read_only=read_only)


def _redis_client(settings: Settings) -> Redis:
    """A client for ``settings.redis_url`` (a cluster's, with ``redis_cluster``): no
    retries, explicit socket timeouts."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    url, timeout = settings.redis_url, settings.redis_socket_timeout
    assert url is not None
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if settings.redis_cluster:
        return RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
