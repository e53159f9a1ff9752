"""Programmatic Alembic: upgrade, downgrade, current, check and the runtime-role grants."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from persistence.errors import ConfigurationError, translate
from persistence.rls import runtime_role_sql

__all__ = [
    "VERSION_TABLE",
    "current",
    "diff",
    "downgrade",
    "grant_runtime_role",
    "head",
    "on_owner",
    "upgrade",
]
T = TypeVar("T")

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


def on_owner(db: Any, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``operation(db.owner_engine, ...)``: how ``Database`` runs a schema operation
    (``AsyncDatabase`` runs it in a worker thread, see ``persistence._aio.on_owner``)."""
    return operation(db.owner_engine, *args, **kwargs)


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


#: Columns and indexes the migrations add on PostgreSQL only, which the models do not
#: hold (each revision says why): (table, name).
POSTGRESQL_ONLY = frozenset({("lg_store_items", "value_jsonb")})


def diff(engine: Engine) -> list[object]:
    """Differences between the models and the database (empty when they match)."""
    from persistence.models import metadata

    def ours(name: str | None, type_: str, parent: Any) -> bool:
        # A host application's tables may share the database: compare only ours.
        if type_ in ("column", "index"):
            return (parent.get("table_name"), name) not in POSTGRESQL_ONLY
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
    Raises ConfigurationError for a role row-level security would not bind (the owner
    or a member of it, a superuser, a ``BYPASSRLS`` role) and, when executing without
    ``create``, for a role that does not exist.
    """
    with engine.connect() as conn:
        _refuse_unbound_role(conn, role, must_exist=execute and not create)
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
        try:
            for statement in statements:
                conn.exec_driver_sql(statement)
        except DBAPIError as exc:
            raise _grant_error(exc, create) from exc
        conn.commit()
    return _masked(statements, role, password)


# The role by name, and the owner of the tables (the connected owner before migrating).
_ROLE_FLAGS = text(
    """
    SELECT r.rolsuper, r.rolbypassrls, pg_has_role(r.oid, o.owner, 'MEMBER') AS owner,
           pg_get_userbyid(o.owner) AS owner_name
    FROM pg_roles r,
         (SELECT coalesce((SELECT relowner FROM pg_class WHERE oid = to_regclass('tenants')),
                          (SELECT oid FROM pg_roles WHERE rolname = current_user)) AS owner) o
    WHERE r.rolname = :role
    """
)


def _refuse_unbound_role(conn: Connection, role: str, *, must_exist: bool) -> None:
    """Refuse, before anything runs, a runtime role that RLS would not bind."""
    flags = conn.execute(_ROLE_FLAGS, {"role": role}).first()
    conn.rollback()
    if flags is None:
        if must_exist:
            raise ConfigurationError(
                f"role {role!r} does not exist: create it (or let the command create it, "
                "without --no-create)"
            )
        return
    if flags.rolsuper:
        why = "a superuser"
    elif flags.rolbypassrls:
        why = "BYPASSRLS"
    elif flags.owner:
        why = f"the owner of the tables ({flags.owner_name!r}) or a member of it"
    else:
        return
    raise ConfigurationError(
        f"role {role!r} is {why}: row-level security would not apply to it. The runtime "
        "role must be a separate plain role: pick a new name (the command creates it "
        "NOSUPERUSER NOBYPASSRLS), and keep the owner URL for migrations and administration"
    )


def _grant_error(exc: DBAPIError, create: bool) -> Exception:
    """What a failed set-up statement means: a missing CREATEROLE says the fix."""
    mapped = translate(exc)
    if create and isinstance(mapped, ConfigurationError) and "create role" in str(mapped):
        return ConfigurationError(
            "the owner role may not create roles: grant it CREATEROLE, or have a DBA create "
            "the runtime role (LOGIN NOSUPERUSER NOBYPASSRLS) and run the command with "
            f"--no-create (create=False) ({mapped})"
        )
    return exc if mapped is None else mapped


def _masked(statements: list[str], role: str, password: str | None) -> list[str]:
    return [
        f"ALTER ROLE \"{role}\" PASSWORD '***'" if password and s.startswith("ALTER ROLE") else s
        for s in statements
    ]
