"""Settings: one object built at the edge (CLI, tests, services) and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

__all__ = ["DEFAULT_SQLITE_PATH", "Codec", "Settings", "mask_url"]

Codec = Literal["none", "zlib", "lz4", "zstd"]

#: Where the embedded SQLite database lives when nothing else is configured.
DEFAULT_SQLITE_PATH = Path("~/.local/share/persistence/persistence.sqlite3")


def _default_database_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE_PATH.expanduser()}"


def mask_url(url: str | None) -> str | None:
    """Return ``url`` with its password replaced by ``***`` (safe to print or log)."""
    if url is None:
        return None
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparseable url>"
    return parsed.render_as_string(hide_password=True)


class Settings(BaseSettings):
    """Configuration, read from ``PERSISTENCE_*`` environment variables when built.

    Nothing is read at import time: build ``Settings()`` at the edge of your program.
    """

    model_config = SettingsConfigDict(env_prefix="PERSISTENCE_", frozen=True, extra="forbid")

    database_url: str = Field(default_factory=_default_database_url)
    """Runtime URL services connect with (on PostgreSQL: the runtime role). Default: the
    owner URL when only that is set (administration), else the embedded SQLite file."""
    owner_database_url: str | None = None
    """URL of the role that owns the tables: migrations and tenant administration."""
    allow_rls_bypass: bool = False
    """PostgreSQL, for development only: let tenant units of work run on a role that
    row-level security does not bind (a superuser, ``BYPASSRLS``, the owner of the
    tables). Off, such a role is refused with ConfigurationError (docs/tenancy.md)."""
    redis_url: str | None = None
    scope_key: SecretStr | None = None
    """The scope signing key, ``<key id>:<secret>`` as ``persistence db scope-key add``
    prints it: units of work on PostgreSQL enter with scope tokens signed by it, which
    row-level security verifies (docs/tenancy.md). Unset: a Database with the owner URL
    uses the database's own ``auto`` key; one without cannot open units of work on
    PostgreSQL. SQLite ignores it (it signs with the key in its own file). Never put it
    in an access descriptor or a log."""
    scope_token_ttl: float = Field(default=900.0, ge=60)
    """Seconds a unit of work's scope token is valid (each unit of work starts with at
    least 90% of it ahead): the longest a unit of work may last on PostgreSQL."""
    database_password: SecretStr | None = None
    """Password for a database URL that carries none (``Database.from_access``)."""
    redis_password: SecretStr | None = None
    """Password for a Redis URL that carries none (``Database.from_access``)."""
    redis_cluster: bool = False
    """``redis_url`` names one node of a Redis Cluster: the client finds the others. Every
    key of a tenant carries its id in a hash tag, so a tenant's keys share one slot."""
    redis_key_prefix: str = "persistence"
    redis_socket_timeout: float = Field(default=2.0, gt=0)
    """Seconds a Redis connect or reply may take (leases fail closed after it)."""
    lease_backend: Literal["auto", "redis", "sql"] = "auto"
    """``auto``: Redis when ``redis_url`` is set on PostgreSQL, else the database."""
    max_store_value_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    """Largest JSON value (serialized) one store key may hold."""
    max_json_depth: int = Field(default=254, ge=1, le=254)
    """Deepest nesting of a JSON value or metadata anyone may write (``[]`` and ``{}``
    are one level); deeper is refused with InvalidInputError naming the path. 254 is
    the most orjson serializes, so the setting may only lower it."""

    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=5, ge=0)
    pool_timeout: float = Field(default=30.0, gt=0)
    pool_recycle: int = Field(default=1800, ge=-1)
    pool_ping_after: float = Field(default=1.0, ge=0)
    """Seconds a pooled PostgreSQL connection may sit idle before checkout pings it."""
    connect_timeout: int = Field(default=10, ge=1)
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=0)
    """PostgreSQL ``idle_in_transaction_session_timeout``: the server ends a connection
    whose transaction waits this long for its client (a stalled lock holder), rolling
    it back and releasing its locks; 0 turns it off."""
    prepared_statements: bool = True
    """PostgreSQL: run hot statements as server-side prepared statements. Turn off behind
    a pooler that cannot carry them across server connections (PgBouncer in transaction
    mode before 1.21, or without ``max_prepared_statements``)."""
    transaction_pooler: bool = False
    """PostgreSQL: the runtime URL (``database_url``) goes through a pooler in transaction
    mode (PgBouncer ``pool_mode = transaction``), which gives each transaction whichever
    server connection is free. Runtime connections then send no startup options
    (PgBouncer refuses them: set ``statement_timeout`` and
    ``idle_in_transaction_session_timeout`` on the runtime role, or the pooler's own
    timeouts; a connection whose DateStyle is not ISO or whose TimeZone is not UTC is
    refused with ConfigurationError), and a unit of work that handed out ``uow.session``
    resets the session within its own transaction, on the server connection that SQL
    ran on. Turn ``prepared_statements`` off too unless the pooler carries them. The
    owner URL connects directly (migrations hold a session advisory lock)."""
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)

    cache: Literal["off", "local", "shared"] = "off"
    """The read cache (docs/cache.md): ``off``; ``local``, an in-process tier per
    ``Database``; ``shared``, that tier in front of a shared one in Redis (needs
    ``redis_url``), invalidated across processes through Redis pub/sub."""
    cache_local_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """What the in-process tier may hold (values plus a per-entry overhead)."""
    cache_ttl: float = Field(default=30.0, gt=0)
    """Seconds an entry lives in Redis: the bound on staleness when an invalidation
    could not reach Redis (down, hung) and the writer could not make up for it."""
    cache_max_stale: float = Field(default=2.0, gt=0)
    """Seconds an in-process entry may be served without the invalidation channel's
    word that nothing changed (``local``: always; ``shared``: while the channel is
    down or silent): the bound on staleness across processes then."""
    cache_max_artifact_bytes: int = Field(default=64 * 1024, ge=0)
    """Largest artifact (stored size) the read cache keeps; larger ones are read from
    the database every time."""
    cache_breaker: float = Field(default=5.0, gt=0)
    """Seconds Redis is skipped by the cache after it failed (no latency per call)."""

    compression: Codec = "none"
    compression_threshold: int = Field(default=1024, ge=0)
    max_state_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    max_versions: int | None = Field(default=None, ge=1)
    max_artifact_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    gc_batch_size: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _shared_cache_needs_redis(self) -> Settings:
        if self.cache == "shared" and not self.redis_url:
            raise ValueError("cache='shared' needs redis_url (PERSISTENCE_REDIS_URL)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _runtime_defaults_to_owner(cls, data: Any) -> Any:
        # Only an owner URL (an operator's CLI, a migration job): one database, not two.
        owner_only = isinstance(data, dict) and data.get("database_url") is None
        if owner_only and data.get("owner_database_url"):
            return {**data, "database_url": data["owner_database_url"]}
        return data

    @field_validator("database_url", "owner_database_url", "redis_url")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    def url_label(self, *, owner: bool = False) -> str:
        """The URL runtime (or, ``owner=True``, owner) connections use, masked and named
        by its setting: what an error about connecting tells the operator to fix."""
        if owner and self.owner_database_url:
            url, setting = self.owner_database_url, "owner_database_url"
        else:
            url, setting = self.database_url, "database_url"
        return f"{setting} (PERSISTENCE_{setting.upper()}) {mask_url(url)!r}"

    @property
    def is_postgres(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "postgresql"

    def __repr__(self) -> str:
        return (
            f"Settings(database_url={mask_url(self.database_url)!r}, "
            f"owner_database_url={mask_url(self.owner_database_url)!r}, "
            f"redis_url={mask_url(self.redis_url)!r})"
        )

    __str__ = __repr__
