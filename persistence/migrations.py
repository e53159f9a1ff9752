"""Programmatic Alembic: upgrade, downgrade, current, check and the runtime-role grants."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from persistence.errors import ConfigurationError
from persistence.rls import runtime_role_sql

__all__ = ["VERSION_TABLE", "current", "diff", "downgrade", "grant_runtime_role", "head", "upgrade"]

VERSION_TABLE = "persistence_alembic_version"
# pg_advisory_lock key that serializes concurrent migrations ("persiste" in ASCII).
_MIGRATION_LOCK_KEY = 0x7065727369737465
_ROOT = Path(__file__).resolve().parent.parent


def _script_location() -> Path:
    """The migrations of this installation: those a wheel ships inside the package, or
    in a source checkout (editable install) the repository's ``migrations/`` next to
    its ``alembic.ini`` -- never another ``migrations/`` that happens to sit beside the
    package (site-packages may hold one of some other project's)."""
    bundled = Path(__file__).resolve().parent / "_migrations"
    if (bundled / "env.py").exists():
        return bundled
    checkout = _ROOT / "migrations"
    if (_ROOT / "alembic.ini").exists() and (checkout / "env.py").exists():
        return checkout
    raise ConfigurationError("the migrations directory is missing from this installation")


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    cfg.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """A connection holding the migration lock: an advisory lock on PostgreSQL,
    a file lock beside the database file on SQLite."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
            return
        database = engine.url.database
        if not database or database == ":memory:":
            yield conn
            return
        with open(f"{database}.migrate-lock", "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield conn
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _exclusive(engine) as conn:
        command.upgrade(config(conn), revision)
        conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    with _exclusive(engine) as conn:
        command.downgrade(config(conn), revision)
        conn.commit()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(config()).get_current_head()


def diff(engine: Engine) -> list[object]:
    """Differences between the models and the database (empty when they match)."""
    from persistence.models import metadata

    def ours(name: str | None, type_: str, parent: object) -> bool:
        # A host application's tables may share the database: compare only ours.
        return type_ != "table" or name in metadata.tables

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"version_table": VERSION_TABLE, "compare_type": True, "include_name": ours},
        )
        return list(compare_metadata(context, metadata))


def _tenant_tables(existing: set[str]) -> tuple[list[str], list[str]]:
    """Tenant tables of the models that exist in the database: a database not yet at
    head gets grants for what it has (run the grant again after upgrading)."""
    from persistence.models import metadata

    admin = ["tenants", "workspaces"]
    data = sorted(
        name
        for name, table in metadata.tables.items()
        if "tenant_id" in table.c and name not in admin and name in existing
    )
    return admin, data


def grant_runtime_role(
    engine: Engine,
    role: str,
    *,
    password: str | None = None,
    create: bool = True,
    execute: bool = True,
) -> list[str]:
    """Run :func:`persistence.rls.runtime_role_sql` as the owner; return it, password masked.

    With ``execute=False`` nothing runs: the SQL is only returned (for review by a DBA).
    """
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        admin, data = _tenant_tables(set(inspect(conn).get_table_names()))
        statements = [
            s.replace("{schema}", schema)
            for s in runtime_role_sql(
                role, admin_tables=admin, data_tables=data, password=password, create=create
            )
        ]
        if not execute:
            return _masked(statements, role, password)
        for statement in statements:
            conn.exec_driver_sql(statement)
        flags = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if flags is None:
            raise ConfigurationError(f"role {role!r} does not exist (pass create=True)")
        if flags.rolsuper or flags.rolbypassrls:
            raise ConfigurationError(
                f"role {role!r} is a superuser or BYPASSRLS: row-level security would not "
                "apply to it; use a plain role"
            )
        conn.commit()
    return _masked(statements, role, password)


def _masked(statements: list[str], role: str, password: str | None) -> list[str]:
    return [
        f"ALTER ROLE \"{role}\" PASSWORD '***'" if password and s.startswith("ALTER ROLE") else s
        for s in statements
    ]
