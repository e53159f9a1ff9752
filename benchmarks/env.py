"""The benchmark environment: a throwaway database, its roles, a Redis prefix; cleaned up.

Set up exactly like the test fixtures (tests/fixtures/services.py): a fresh database
owned by a non-superuser owner role that runs the migrations, and a runtime role (not
owner, not superuser, not BYPASSRLS) that runs every runtime query under RLS, as in
production. LangGraph's ``PostgresStore`` gets its own database on the same server so
its tables can never collide with ours.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import redis
from sqlalchemy.engine import make_url

from persistence import Database
from persistence.database_async import AsyncDatabase
from persistence.scopes import mint

ADMIN_URL = os.environ.get(
    "PERSISTENCE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PERSISTENCE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TENANT = "bench"


@dataclass(frozen=True)
class BenchEnv:
    """URLs of one benchmark run (SQLAlchemy URLs use psycopg; ``*_dsn`` are libpq)."""

    admin_dsn: str
    owner_url: str
    runtime_url: str
    owner_dsn: str
    runtime_dsn: str
    langgraph_dsn: str
    redis_url: str
    redis_prefix: str
    tenant: str = TENANT

    def database(self, **settings: object) -> Database:
        """Our API, as production runs it: runtime role under RLS, owner for admin."""
        return Database.from_url(
            self.runtime_url,
            owner_url=self.owner_url,
            redis_url=self.redis_url,
            redis_key_prefix=self.redis_prefix,
            **{"scope_key": None, **settings},  # (the run's database signs with its own key)
        )

    def async_database(self, **settings: object) -> AsyncDatabase:
        """:meth:`database` on asyncio."""
        return AsyncDatabase.from_url(
            self.runtime_url,
            owner_url=self.owner_url,
            redis_url=self.redis_url,
            redis_key_prefix=self.redis_prefix,
            **{"scope_key": None, **settings},  # (the run's database signs with its own key)
        )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def bench_env(admin_url: str = ADMIN_URL, redis_url: str = REDIS_URL) -> Iterator[BenchEnv]:
    """Create the databases, roles and tenant; drop everything on exit (even on error).

    ``admin_url`` (libpq) must be a role that can create databases and roles.
    """
    suffix = uuid.uuid4().hex[:10]
    database, lg_database = f"pbench_{suffix}", f"pbench_lg_{suffix}"
    owner, runtime = f"pbench_owner_{suffix}", f"pbench_rt_{suffix}"
    prefix = f"pbench-{suffix}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER CREATEROLE')
        conn.execute(f'CREATE ROLE "{runtime}" LOGIN NOSUPERUSER NOBYPASSRLS')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        conn.execute(f'CREATE DATABASE "{lg_database}" OWNER "{owner}"')
    base = make_url(admin_url).set(drivername="postgresql+psycopg", database=database)
    owner_url = base.set(username=owner, password=None).render_as_string(False)
    runtime_url = base.set(username=runtime, password=None).render_as_string(False)
    env = BenchEnv(
        admin_dsn=_libpq(base.render_as_string(False)),
        owner_url=owner_url,
        runtime_url=runtime_url,
        owner_dsn=_libpq(owner_url),
        runtime_dsn=_libpq(runtime_url),
        langgraph_dsn=_libpq(
            base.set(username=owner, password=None, database=lg_database).render_as_string(False)
        ),
        redis_url=redis_url,
        redis_prefix=prefix,
    )
    try:
        with Database.from_url(owner_url) as owner_db:
            owner_db.migrate()
            owner_db.grant_runtime_role(runtime)
            with owner_db.admin() as admin:
                admin.tenants.create(TENANT, name="Benchmark tenant")
        yield env
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in (database, lg_database):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (runtime, owner):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        _drop_redis_keys(redis_url, prefix)


def _drop_redis_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def tenant_id(env: BenchEnv) -> uuid.UUID:
    """The benchmark tenant's id."""
    with psycopg.connect(env.owner_dsn) as conn:
        row = conn.execute("SELECT id FROM tenants WHERE slug = %s", (env.tenant,)).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def scope_token(env: BenchEnv, workspace: str = "default") -> str:
    """The scope token of the benchmark tenant's ``workspace`` (an hour), signed with the
    run's database's own key: what our units of work enter with, so that the raw
    baselines give the server the same verification to do."""
    with Database.from_url(env.owner_url, scope_key=None) as db, db.admin() as admin:
        key = admin.scope_keys.own_key()
    ids = tenant_id(env), workspace_id(env, workspace)
    return mint(key, *ids, expires=int(time.time()) + 3600)


def workspace_id(env: BenchEnv, slug: str = "default") -> uuid.UUID:
    with psycopg.connect(env.owner_dsn) as conn:
        row = conn.execute(
            "SELECT w.id FROM workspaces w JOIN tenants t ON t.id = w.tenant_id "
            "WHERE t.slug = %s AND w.slug = %s",
            (env.tenant, slug),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def vacuum(env: BenchEnv) -> None:
    """VACUUM the run's database: rows just written get their hint bits set, so the first
    read of each does not pay for that (outliers of a few ms, every few dozen rows)."""
    with psycopg.connect(env.admin_dsn, autocommit=True) as conn:
        conn.execute("VACUUM")
